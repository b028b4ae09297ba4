"""The Django lane's app: a settings module and one model, nothing else."""
