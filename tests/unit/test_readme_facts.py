"""What the READMEs say about variables and tags, held against the code (issue 29).

Every Markdown file a user reads (README.md, roles/*/README.md, docs/**/*.md, examples/**/*.md)
is scanned for:

- variable names: a backticked word with a role's or a runbook's prefix (`pgbouncer_...`,
  `firewall_...`, `switchover_...`) must be an option of a role's meta/argument_specs.yml, a key
  of a role's defaults/main.yml, or a variable a playbook declares or reads with a default; or
  else a module, filter, role, group or tag name;
- defaults: "`NAME` (default V)", "`NAME`, default V", "`NAME` defaults to V", "`NAME` (V)" with V
  a literal (a number with a unit, true/false, a backticked value), and the Default column of a
  table with a Variable column, must equal the default in argument_specs, defaults/main.yml or
  the playbook;
- requiredness: a variable called required must be `required: true` in its argument spec, or be
  refused empty by its role's checks ("NAME is required") and be called required only under a
  condition ("when", "if", "with", ...);
- tags: `--tags`/`--skip-tags` arguments, "tag `X`", and the first column of a table with a Tag
  column must be tags the roles or playbooks use; a sentence that says a tag runs nothing of the
  other roles, or that every role's argument validation runs with any tag, is held against
  `ansible-playbook --list-tasks --tags pgbouncer_userlist` on site.yml;
- paths of the repository the text names must exist, and `ansible-playbook` command lines
  name the playbooks by their FQCN (pgbouncer.cluster.site), as the installed collection has them.

Cost: about 3 s (the file reads, and one `--list-tasks` run of site.yml, about 2 s, only while a
README makes the claim it checks).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFIXES = ("pgbouncer_", "firewall_", "haproxy_", "keepalived_", "switchover_", "maintenance_", "rolling_restart_", "drain_", "patroni_")
NAME = re.compile(r"(?<![\w./-])((?:%s)[a-z0-9_]*\*?)(?![\w-])" % "|".join(PREFIXES))
BACKTICKED = re.compile(r"`([^`\n]+)`")
CONDITION = re.compile(r"\b(when|if|with|while|once|unless|for (?:group|hosts?|the))\b", re.IGNORECASE)
UNSET = object()
# A name the collection no longer reads may be named where the text says so.
RETIRED = re.compile(r"older name|no longer read", re.IGNORECASE)


def documents(root=ROOT):
    """The Markdown files users read, relative to `root`."""
    found = [root / "README.md", *sorted(root.glob("roles/*/README.md"))]
    for folder in ("docs", "examples"):
        found += sorted((root / folder).glob("**/*.md"))
    # docs/bench holds published measurements of past runs (their column names, the settings
    # of that run), not statements about the current code.
    return [path for path in found if path.exists() and "bench" not in path.relative_to(root).parts]


def _options(options, prefix=""):
    for name, spec in (options or {}).items():
        spec = spec or {}
        yield prefix + name, spec
        yield from _options(spec.get("options"), prefix + name + ".")


def knowledge(root=ROOT):
    """Names, defaults, required names and tags as the code has them."""
    specs, defaults, required, refused = {}, {}, set(), set()
    for spec_file in sorted(root.glob("roles/*/meta/argument_specs.yml")):
        for entry in (yaml.safe_load(spec_file.read_text())["argument_specs"] or {}).values():
            for name, spec in _options((entry or {}).get("options")):
                specs[name] = spec
                if spec.get("required"):
                    required.add(name)
    for defaults_file in sorted(root.glob("roles/*/defaults/main.yml")):
        defaults.update(yaml.safe_load(defaults_file.read_text()) or {})
    for check in [*root.glob("roles/*/tasks/*.yml"), *root.glob("playbooks/**/*.yml"), *root.glob("plugins/module_utils/*.py")]:
        refused.update(re.findall(r"\b(\w+) is (?:required|needed)\b", check.read_text()))
    playbook_vars = {}
    for playbook in sorted((root / "playbooks").glob("*.yml")) + sorted((root / "playbooks" / "tasks").glob("*.yml")):
        text = playbook.read_text()
        for play in yaml.safe_load(text) or []:
            if isinstance(play, dict) and isinstance(play.get("vars"), dict):
                playbook_vars.update(play["vars"])
        for name, value in re.findall(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(([^()]*)\)", text):
            playbook_vars.setdefault(name, _literal(value))
        for name in NAME.findall(text):
            playbook_vars.setdefault(name, UNSET)
    tags = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "tags":
                    tags.update([value] if isinstance(value, str) else value or [])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for source in [*root.glob("roles/*/tasks/*.yml"), *root.glob("roles/*/handlers/*.yml"), *root.glob("playbooks/*.yml"),
                   *root.glob("playbooks/tasks/*.yml")]:
        walk(yaml.safe_load(source.read_text()))
    others = {path.stem for path in root.glob("plugins/modules/*.py")} | {path.stem for path in root.glob("plugins/filter/*.yml")}
    others |= {path.name for path in root.glob("roles/*")}
    # Names that are values, not variables: a default such as haproxy_frontend_name's
    # pgbouncer_front, or a name the templates write (the keepalived_script user).
    for value in [*specs.values(), *defaults.values()]:
        value = value.get("default") if isinstance(value, dict) and "type" in value else value
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and "{{" not in item:
                others.add(item)
    # Prometheus metric names (pgbouncer_pools_*, pgbouncer_stats_totals_*) that the rules and the dashboard use.
    monitoring = [*root.glob("monitoring/prometheus/*.yml"), *root.glob("monitoring/grafana/*.json")]
    for template in [*root.glob("roles/*/templates/*"), *root.glob("roles/*/files/*"), *monitoring]:
        others.update(NAME.findall(template.read_text()))
    return {"root": root, "specs": specs, "defaults": defaults, "required": required, "refused": refused, "playbook_vars": playbook_vars,
            "tags": tags, "others": others}


def _literal(text):
    text = text.strip()
    try:
        return yaml.safe_load(text) if text else UNSET
    except yaml.YAMLError:
        return UNSET


def root_of(facts):
    return facts.get("root")


def known_names(facts):
    return set(facts["specs"]) | set(facts["defaults"]) | set(facts["playbook_vars"]) | facts["tags"] | facts["others"]


def default_of(facts, name):
    """The default the code gives `name`, UNSET when it has none or it is a template."""
    if name in facts["specs"] and "default" in facts["specs"][name]:
        value = facts["specs"][name]["default"]
    elif name in facts["defaults"]:
        value = facts["defaults"][name]
    else:
        value = facts["playbook_vars"].get(name, UNSET)
    if isinstance(value, str) and "{{" in value:
        return UNSET
    return value


UNITS = {"s": 1, "seconds": 1, "ms": 1, "bytes": 1, "MiB": 1024 * 1024, "KiB": 1024}


class Raw(str):
    """A backticked README value as written, compared as text with a string default."""

    value = UNSET


def parse_value(text):
    """A README's literal value: (True, value) or (False, None) when it is words, not a literal."""
    text = text.strip().rstrip(".,;:")
    if text.startswith("`") and text.endswith("`") and text.count("`") == 2:
        if NAME.fullmatch(text.strip("`")):
            return False, None  # another variable's name: "`x` (`y`)" names y, it is no value
        raw = Raw(text.strip("`"))
        raw.value = _literal(raw) if raw not in ("", "''") else ""
        return True, raw
    number = re.fullmatch(r"(\d+(?:\.\d+)?)(?:\s*(s|ms|seconds|bytes|MiB|KiB))?", text)
    if number:
        value = float(number.group(1)) * UNITS.get(number.group(2) or "", 1)
        return True, int(value) if value == int(value) else value
    if text in ("true", "false"):
        return True, text == "true"
    return False, None


def same(claimed, actual):
    if isinstance(claimed, Raw):
        if isinstance(actual, str):
            return claimed in (actual, "'%s'" % actual, '"%s"' % actual) or (actual == "" and claimed == "''")
        claimed = claimed.value
    if claimed == actual:
        return True
    if isinstance(actual, str) and isinstance(claimed, (int, float)):
        return actual.replace(" ", "") in ("%s" % claimed, "%ss" % claimed)
    return str(claimed).replace(" ", "") == str(actual).replace(" ", "") and not isinstance(actual, (list, dict))


DEFAULT_CLAIMS = (
    # `NAME` (default V) / `NAME` ... (default V) / `NAME` (V)
    re.compile(r"`(?P<name>[a-z][a-z0-9_]*)`[^`\n(.;]{0,40}\((?:default:?|by default)?\s*(?P<value>`[^`]+`|[\w.]+(?:\s(?:s|ms|seconds|bytes|MiB))?)\s*[),;]"),
    # `NAME`, default V / `NAME` defaults to V
    re.compile(r"`(?P<name>[a-z][a-z0-9_]*)`,?\s+(?:defaults? to|default)\s+(?P<value>`[^`]+`|[\w.]+(?:\s(?:s|ms|seconds|bytes|MiB))?)"),
)


def table_rows(text):
    """(header cells, row cells, line number) of every Markdown table."""
    header = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
        elif not set(line.replace("|", "").strip()) <= set("-: "):
            yield header, cells, number


def problems_in(text, where, facts, list_tasks=None):
    """Every statement of `text` that the code contradicts, as 'where:line: ...' strings."""
    found = []
    names = known_names(facts)
    lines = text.splitlines()

    def line_of(offset):
        return text.count("\n", 0, offset) + 1

    # Names, in backticks and code blocks alike.
    for match in NAME.finditer(text):
        name = match.group(1)
        if name.endswith("*"):
            if not any(known.startswith(name[:-1]) for known in names):
                found.append("%s:%d: no variable starts with %s" % (where, line_of(match.start()), name[:-1]))
        elif name not in names and not name.endswith("_") and not RETIRED.search(text[max(0, match.start() - 80):match.end() + 80]):
            found.append("%s:%d: %s is no variable, tag, module, filter or role of the collection" % (where, line_of(match.start()), name))
    # Defaults in prose.
    for pattern in DEFAULT_CLAIMS:
        for match in pattern.finditer(text):
            name = match.group("name")
            literal, value = parse_value(match.group("value"))
            actual = default_of(facts, name)
            if literal and actual is not UNSET and name in names and not same(value, actual):
                found.append("%s:%d: %s: the README says default %s, the code has %s" % (
                    where, line_of(match.start()), name, match.group("value"), json.dumps(actual)))
    # Tables: a Variable column with Default and Required columns or a description.
    for header, cells, number in table_rows(text):
        if "variable" not in header or len(cells) != len(header):
            continue
        named = BACKTICKED.findall(cells[header.index("variable")])
        if not named or not NAME.fullmatch(named[0].split(".")[0]):
            continue
        name = named[0]
        row = dict(zip(header, cells))
        required_cell = row.get("required", "")
        if "default" in row and row["default"] not in ("", "*required*", "-", "none"):
            literal, value = parse_value(row["default"])
            actual = default_of(facts, name)
            if literal and actual is not UNSET and not same(value, actual):
                found.append("%s:%d: %s: the table says default %s, the code has %s" % (where, number, name, row["default"], json.dumps(actual)))
        said_required = row.get("default") == "*required*" or required_cell.lower().startswith("yes")
        if said_required and name not in facts["required"] and not (name in facts["refused"] and CONDITION.search(required_cell)):
            found.append("%s:%d: %s: the table calls it required, its argument spec does not" % (where, number, name))
        for key in ("description", "what", "what it is"):
            if name not in facts["required"] and re.search(r"\brequired\b", row.get(key, "")):
                clause = row[key][row[key].index("required") - 60 if row[key].index("required") > 60 else 0:][:160]
                if not CONDITION.search(clause) or name not in facts["refused"]:
                    found.append("%s:%d: %s: its description calls it required, its argument spec does not (and no condition is given)" % (
                        where, number, name))
    # Required in prose (tables are handled above).
    for index, line in enumerate(lines, 1):
        if line.startswith("|"):
            continue
        for match in re.finditer(r"`([a-z][a-z0-9_]*)`([^`.;]{0,60}?)\brequired\b", line):
            name, between = match.groups()
            if name in names and name not in facts["required"] and not (name in facts["refused"] and CONDITION.search(line)):
                found.append("%s:%d: %s: called required, its argument spec does not require it" % (where, index, name))
    # Paths of the repository named in the text must exist (a group_vars/ the example inventory lacks).
    for match in re.finditer(r"(?<![\w./-])((?:playbooks|roles|inventories|docs|examples|plugins|tests|changelogs)/[\w./*-]*[\w/*])", text):
        path = match.group(1)
        if root_of(facts) is not None and not any(root_of(facts).glob(path.rstrip("/"))):
            found.append("%s:%d: %s does not exist" % (where, line_of(match.start()), path))
    # A user runs the installed collection's playbooks by their FQCN, not by a checkout's path.
    for match in re.finditer(r"ansible-playbook [^\n]*?\bplaybooks/(site|maintenance|switchover|rolling_restart|drain)\.yml", text):
        found.append("%s:%d: ansible-playbook ... playbooks/%s.yml: the installed collection's playbook is pgbouncer.cluster.%s" % (
            where, line_of(match.start()), match.group(1), match.group(1)))
    # Tags.
    tag_claims = [(m.group(1), line_of(m.start())) for m in re.finditer(r"--(?:skip-)?tags[ =]+([\w,]+)", text)]
    tag_claims += [(m.group(1), line_of(m.start())) for m in re.finditer(r"\btags? `([\w]+)`", text)]
    for header, cells, number in table_rows(text):
        if header and header[0] == "tag":
            tag_claims += [(tag, number) for tag in BACKTICKED.findall(cells[0])]
    for claim, number in tag_claims:
        for tag in claim.split(","):
            if tag and tag not in facts["tags"]:
                found.append("%s:%d: tag %s is not used by any role or playbook" % (where, number, tag))
    for match in re.finditer(r"every role's argument\s+validation", text):
        if list_tasks is not None:
            every = {path.name for path in root_of(facts).glob("roles/*") if (path / "meta" / "argument_specs.yml").exists()}
            missing = every - list_tasks("pgbouncer_userlist")
            if missing:
                found.append("%s:%d: every role's argument validation runs with a tag: --tags pgbouncer_userlist runs nothing of %s" % (
                    where, line_of(match.start()), ", ".join(sorted(missing))))
    for match in re.finditer(r"nothing of the other(?:s| roles)", text):
        if list_tasks is not None:
            others = list_tasks("pgbouncer_userlist") - {"pgbouncer"}
            if others:
                found.append("%s:%d: a tag runs nothing of the other roles: --tags pgbouncer_userlist still runs tasks of %s" % (
                    where, line_of(match.start()), ", ".join(sorted(others))))
    return found


def roles_run_by_tag(tag):
    """The roles with a task that `ansible-playbook site.yml --list-tasks --tags TAG` lists."""
    inventory = {
        "all": {"vars": {"ansible_connection": "local"}},
        "pgbouncer": {"hosts": {"db1": {"ansible_host": "127.0.0.1"}}},
        "haproxy": {"children": {"pgbouncer": {}}}, "keepalived": {"children": {"haproxy": {}}},
    }
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory() as tmp:
        hosts = Path(tmp) / "hosts.json"
        hosts.write_text(json.dumps(inventory))
        result = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(hosts), "playbooks/site.yml",
                                 "--list-tasks", "--tags", tag], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    roles = set(re.findall(r"pgbouncer\.cluster\.(\w+) : ", result.stdout))
    roles |= set(re.findall(r"Validate the (\w+) settings", result.stdout))
    return roles


def test_the_checker_finds_wrong_statements():
    """Guards the test below against a checker that finds nothing: one wrong statement of each kind."""
    facts = knowledge()
    text = "\n".join([
        "Only `pgbouncer_admin_users` (default `[pgbouncer]`) may run commands.",
        "Open 6432 to `pgbouncer_no_such_sources`.",
        "`pgbouncer_health_login_password` is required.",
        "`pgbouncer_health_port` (6481) is the agent's.",
        "ansible-playbook site.yml --tags pgbouncer_nothing",
        "",
        "| Variable | Required | Default |",
        "|---|---|---|",
        "| `pgbouncer_listen_port` | yes | `6433` |",
    ])
    found = problems_in(text, "sample", facts)
    assert sorted(line.split(": ", 2)[1].split(" ")[0].rstrip(":") + "@" + line.split(": ", 1)[0] for line in found) == [
        "pgbouncer_admin_users@sample:1", "pgbouncer_health_login_password@sample:3", "pgbouncer_health_port@sample:4",
        "pgbouncer_listen_port@sample:9", "pgbouncer_listen_port@sample:9", "pgbouncer_no_such_sources@sample:2",
        "pgbouncer_nothing@sample:5", "tag@sample:5"], found
    right = "`pgbouncer_admin_users` (default `[]`); `pgbouncer_health_port` (6480); --tags pgbouncer_userlist"
    assert problems_in(right, "sample", facts) == []


def test_readmes_agree_with_the_code():
    facts = knowledge()
    cache = {}

    def list_tasks(tag):
        if tag not in cache:
            cache[tag] = roles_run_by_tag(tag)
        return cache[tag]

    found = []
    for path in documents():
        found += problems_in(path.read_text(), str(path.relative_to(ROOT)), facts, list_tasks)
    assert found == [], "\n".join(found)


def heading_jumps(text):
    """Headings that go down more than one level from the one before (## then ####)."""
    jumps, level, fence = [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
        heading = re.match(r"(#{1,6}) ", line)
        if heading and not fence:
            if len(heading.group(1)) > level + 1:
                jumps.append("%d: %s" % (number, line))
            level = len(heading.group(1))
    return jumps


def test_headings_do_not_jump_levels():
    """Issue 29: README.md went from ## to ####. Cost: milliseconds."""
    assert heading_jumps("# a\n## b\n#### c\n```\n# not a heading\n```\n") == ["3: #### c"]
    found = {str(path.relative_to(ROOT)): heading_jumps(path.read_text()) for path in [*documents(), ROOT / "CHANGELOG.md"]}
    assert {path: jumps for path, jumps in found.items() if jumps} == {}
