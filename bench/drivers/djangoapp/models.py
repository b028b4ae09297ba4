"""The lane's one model, on the table the runner creates (common.TABLE)."""

from __future__ import annotations

from django.db import models


class LaneRow(models.Model):
    driver = models.TextField()
    worker = models.IntegerField()
    n = models.IntegerField(default=0)
    payload = models.TextField(null=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "djangoapp"
        db_table = "drivers_lane"
        managed = False
