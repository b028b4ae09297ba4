#!/usr/bin/python
# Copyright: pgbouncer.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: node_files
short_description: Write several plain files, make their directories and remove old files, in one call
description:
  - One module call where a role would otherwise run a C(file), C(copy) or C(template) task for each
    directory, file and leftover, each of which costs about half a second on every run, changed or not.
  - Makes the directories of O(directories) that are missing and gives each its O(directories[].owner),
    O(directories[].group) and O(directories[].mode). A missing parent directory of a file that O(directories)
    does not list is made too, C(root:root 0755).
  - Replaces each file of O(files) whose content differs, through a temporary file in the same directory that
    has the final owner, group and mode before it is moved into place, and gives an unchanged file the
    owner, group and mode it should have.
  - Removes the files and links that O(absent) names, after the writes.
  - Checks every entry before it changes anything; an entry it refuses (a relative path, a path both written
    and removed, an unknown user, a directory to remove) leaves the node as it was.
  - Reports per path what changed (RV(files), RV(directories), RV(removed)), so that a task can notify a
    handler and a handler can act only on the file that concerns it.
version_added: 0.1.0
author: pgbouncer.cluster contributors (@pgbouncer-cluster)
options:
  files:
    description:
      - The files to write, in order.
      - Not for secrets. The content is in the task's arguments and in the diff of C(--diff); write a file
        that holds a password with its own task under C(no_log).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description:
          - The whole content of the file, as text (UTF-8). A template rendered on the controller with
            C(lookup('ansible.builtin.template', ...)) goes here.
        type: str
        required: true
      owner:
        description: Owner of the file.
        type: str
        default: root
      group:
        description: Group of the file.
        type: str
        default: root
      mode:
        description: Permissions of the file, in octal (quote it in YAML, V('0644')).
        type: str
        default: '0644'
  directories:
    description: Directories to make when missing, with their owner, group and mode.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory. Missing parents are made C(root:root 0755).
        type: path
        required: true
      owner:
        description: Owner of the directory.
        type: str
        default: root
      group:
        description: Group of the directory.
        type: str
        default: root
      mode:
        description: Permissions of the directory, in octal (quote it in YAML, V('0755')).
        type: str
        default: '0755'
  absent:
    description:
      - Files or links to remove (what earlier versions of a role left behind). A missing path is no change.
      - A path whose last part holds C(*), C(?) or C([) is a shell-style pattern, as C(ansible.builtin.find)'s
        O(ansible.builtin.find#module:patterns) in that directory. Names starting with C(.) match only a
        pattern that starts with C(.).
      - A directory is refused, named or matched.
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what would be made, written and removed, with the same diff; changes nothing.
  diff_mode:
    support: full
    description:
      - The old and new content of each file whose content changes; the old and new owner, group, mode or state
        of each file, directory or removed path whose only change is that.
notes:
  - Owner and group are names or numeric ids. In check mode an owner or group that does not exist yet (an earlier
    task of the real run would create it) counts as a change, with a warning; in a real run it fails the module
    before anything changes.
seealso:
  - module: ansible.builtin.copy
  - module: ansible.builtin.template
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Install the agent, its unit and their directory; remove what an earlier version left
  pgbouncer.cluster.node_files:
    directories:
      - path: /usr/local/libexec/example
    files:
      - dest: /usr/local/libexec/example/agent
        content: "{{ lookup('ansible.builtin.file', 'agent.sh') }}"
        mode: '0755'
      - dest: /etc/systemd/system/example-agent.service
        content: "{{ lookup('ansible.builtin.template', 'example-agent.service.j2') }}"
    absent:
      - /usr/local/sbin/example-agent-old
      - /etc/example/example.conf.*@*~
  register: example_files
  notify: example agent changed

# In the handler, act only on the file that concerns it.
- name: Reload systemd
  ansible.builtin.systemd_service:
    daemon_reload: true
  when: "'/etc/systemd/system/example-agent.service' in example_files.files"
  listen: example agent changed
"""

RETURN = r"""
files:
  description: The O(files) whose content, owner, group or mode changed (or would change, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [/etc/systemd/system/example-agent.service]
directories:
  description: The directories made or whose owner, group or mode changed (or would), parents before children.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/libexec/example]
removed:
  description: The paths removed (or that would be), the matches of a pattern sorted.
  returned: always
  type: list
  elements: str
  sample: [/usr/local/sbin/example-agent-old]
"""

import glob
import grp
import os
import posixpath
import pwd
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgbouncer.cluster.plugins.module_utils._files import write_atomically

OCTAL_MODE = re.compile(r"^0?[0-7]{3,4}$")
GLOB_CHARS = re.compile(r"[*?[]")
OWNER_DEFAULTS = dict(owner=dict(type="str", default="root"), group=dict(type="str", default="root"))


def argument_spec():
    return dict(
        files=dict(type="list", elements="dict", default=[], options=dict(
            dest=dict(type="path", required=True),
            content=dict(type="str", required=True),
            mode=dict(type="str", default="0644"),
            **OWNER_DEFAULTS)),
        directories=dict(type="list", elements="dict", default=[], options=dict(
            path=dict(type="path", required=True),
            mode=dict(type="str", default="0755"),
            **OWNER_DEFAULTS)),
        absent=dict(type="list", elements="path", default=[]),
    )


def _known(name, by_name, by_id):
    """Whether a user or group (a name, or a numeric id) exists on the node."""
    try:
        by_name(name)
        return True
    except KeyError:
        if name.isdigit():
            try:
                by_id(int(name))
                return True
            except KeyError:
                pass
    return False


def problems(files, directories, absent):
    """Messages for entries the module refuses whatever the node holds (paths, modes, contradictions)."""
    found = []
    entries = [("files", entry["dest"], entry) for entry in files] + [("directories", entry["path"], entry) for entry in directories]
    for option, path, entry in entries:
        if not posixpath.isabs(path):
            found.append("%s: %s is not an absolute path" % (option, path))
        if not OCTAL_MODE.match(str(entry["mode"])):
            found.append("%s: %s has mode %r; give an octal mode such as '0644'" % (option, path, entry["mode"]))
    for path in absent:
        if not posixpath.isabs(path):
            found.append("absent: %s is not an absolute path" % path)
        elif GLOB_CHARS.search(posixpath.dirname(path)):
            found.append("absent: %s has a pattern in its directory part; only the last part may be a pattern" % path)
    dests = [os.path.normpath(entry["dest"]) for entry in files]
    for dest in sorted({dest for dest in dests if dests.count(dest) > 1}):
        found.append("files: %s is listed more than once" % dest)
    removed = {os.path.normpath(path) for path in absent}
    for dest in sorted(set(dests) & removed):
        found.append("%s is both in files and in absent; keep it in one of them" % dest)
    return found


def unknown_owners(entries):
    """{path: [message, ...]} for the `entries` whose owner or group the node does not know."""
    found = {}
    for entry in entries:
        path = entry.get("dest") or entry.get("path")
        if not _known(entry["owner"], pwd.getpwnam, pwd.getpwuid):
            found.setdefault(path, []).append("%s: user %s does not exist on this node" % (path, entry["owner"]))
        if not _known(entry["group"], grp.getgrnam, grp.getgrgid):
            found.setdefault(path, []).append("%s: group %s does not exist on this node" % (path, entry["group"]))
    return found


def node_problems(files, directories):
    """Messages for entries that what the node holds makes impossible (a file where a directory goes...)."""
    found = ["files: %s is a directory: remove it, or choose another dest" % entry["dest"]
             for entry in files if os.path.isdir(entry["dest"])]
    for path in [entry["path"] for entry in directories] + [os.path.dirname(entry["dest"]) for entry in files]:
        blocking = [parent for parent in [path] + [os.path.dirname(p) for p in missing_parents(path)] if os.path.lexists(parent)
                    and not os.path.isdir(parent)]
        found.extend("%s exists and is not a directory: remove it, or choose another path" % parent for parent in blocking)
    return sorted(set(found), key=found.index)


def read_bytes(path):
    """The bytes of `path`, or None when there is no such file."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def text(data):
    return data.decode("utf-8", errors="replace") if data is not None else ""


def missing_parents(path):
    """The directories above `path` (excluded) that do not exist, top first."""
    missing = []
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent) and not os.path.lexists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    return list(reversed(missing))


def expand(path):
    """The paths an `absent` entry names: itself, or the matches of a pattern, sorted."""
    if GLOB_CHARS.search(posixpath.basename(path)):
        return sorted(glob.glob(path))
    return [path] if os.path.lexists(path) else []


def file_args(module, path, entry):
    return module.load_file_common_arguments(dict(path=path, owner=entry["owner"], group=entry["group"], mode=entry["mode"]))


class Run:
    """One call: what to change, then the changes (none in check mode), and the result."""

    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.result = dict(changed=False, files=[], directories=[], removed=[])
        self.diffs = []
        self.made = set()  # directories made (or that would be) in this call

    def exists(self, path):
        return path in self.made or os.path.isdir(path)

    def attributes(self, path, entry, owners_known=True):
        """Owner, group and mode of an existing `path` set as `entry` says; whether they changed."""
        diff = dict(before=dict(path=path), after=dict(path=path))
        if not owners_known:  # check mode only: the real run makes the owner first, then sets it
            return True
        changed = self.module.set_fs_attributes_if_different(file_args(self.module, path, entry), False, diff=diff)
        if changed:
            self.diffs.append(diff)
        return changed

    def directory(self, path, entry, owners_known=True):
        if path in self.made:
            return
        if os.path.isdir(path):
            if self.attributes(path, entry, owners_known):
                self.result["directories"].append(path)
            return
        if os.path.lexists(path):
            self.module.fail_json(msg="%s exists and is not a directory: remove it, or choose another path" % path)
        self.diffs.append(dict(before=dict(path=path, state="absent"), after=dict(path=path, state="directory")))
        self.result["directories"].append(path)
        self.made.add(path)
        if not self.check:
            try:
                os.mkdir(path)
            except OSError as exc:
                self.module.fail_json(msg="cannot make directory %s: %s" % (path, exc))
            if owners_known:
                self.module.set_fs_attributes_if_different(file_args(self.module, path, entry), True)

    def parents(self, path, owners_known):
        for parent in missing_parents(path):
            if parent not in self.made:
                self.directory(parent, dict(owner="root", group="root", mode="0755"), owners_known)

    def write(self, entry, owners_known=True):
        dest = entry["dest"]
        wanted = entry["content"].encode("utf-8")
        if os.path.isdir(dest):
            self.module.fail_json(msg="files: %s is a directory: remove it, or choose another dest" % dest)
        self.parents(dest, True)
        current = None if os.path.dirname(dest) in self.made else read_bytes(dest)
        if current == wanted:
            if self.attributes(dest, entry, owners_known):
                self.result["files"].append(dest)
            return
        self.diffs.append(dict(before=text(current), after=entry["content"], before_header=dest, after_header=dest))
        self.result["files"].append(dest)
        if not self.check:
            try:
                write_atomically(self.module, dest, wanted, file_args(self.module, dest, entry),
                                 prefix="." + os.path.basename(dest) + ".")
            except OSError as exc:
                self.module.fail_json(msg="cannot write %s: %s" % (dest, exc))

    def remove(self, path):
        if os.path.isdir(path) and not os.path.islink(path):
            self.module.fail_json(msg="absent: %s is a directory; this module removes files and links only" % path)
        self.diffs.append(dict(before=dict(path=path, state="file"), after=dict(path=path, state="absent")))
        self.result["removed"].append(path)
        if not self.check:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.module.fail_json(msg="cannot remove %s: %s" % (path, exc))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    files = [dict(entry, dest=os.path.normpath(entry["dest"])) for entry in params["files"]]
    directories = [dict(entry, path=os.path.normpath(entry["path"])) for entry in params["directories"]]
    found = problems(files, directories, params["absent"])
    to_remove = []
    if not found:
        found.extend(node_problems(files, directories))
        for pattern in params["absent"]:
            for path in expand(os.path.normpath(pattern)):
                if os.path.isdir(path) and not os.path.islink(path):
                    found.append("absent: %s is a directory; this module removes files and links only" % path)
                elif path not in to_remove:
                    to_remove.append(path)
    unknown = unknown_owners(files + directories)
    unknown_messages = [message for messages in unknown.values() for message in messages]
    if not module.check_mode:
        found.extend(unknown_messages)
    if found:
        module.fail_json(msg="nothing changed: " + "; ".join(found))
    if unknown_messages:
        module.warn("check mode: %s; the real run fails unless an earlier task makes them" % "; ".join(unknown_messages))

    run = Run(module)
    for entry in sorted(directories, key=lambda entry: entry["path"].count("/")):
        run.parents(entry["path"], True)
        run.directory(entry["path"], entry, entry["path"] not in unknown)
    for entry in files:
        run.write(entry, entry["dest"] not in unknown)
    for path in to_remove:
        run.remove(path)

    result = run.result
    result["changed"] = bool(result["files"] or result["directories"] or result["removed"])
    if module._diff and run.diffs:
        result["diff"] = run.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
