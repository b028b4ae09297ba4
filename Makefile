# pgbouncer.cluster: `make lab` builds the podman lab and deploys to it; `make test` runs
# every check (lint, sanity, unit, Molecule on the lab). Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
LAB_INVENTORY ?= inventories/lab
PLAYBOOK := ansible-playbook -i $(LAB_INVENTORY)

.PHONY: deps lab lab-up lab-prepare lab-deploy lab-show lab-down test lint lint-only sanity unit molecule bench build docs clean

deps:
	@scripts/install-deps

lab: deps lab-up lab-prepare lab-deploy lab-show

lab-up:
	lab/lab.sh up

lab-prepare:
	$(PLAYBOOK) playbooks/lab/prepare.yml

lab-deploy:
	$(PLAYBOOK) playbooks/site.yml

lab-show:
	$(PLAYBOOK) playbooks/lab/show.yml

lab-down:
	lab/lab.sh down

# deps, lint, sanity, unit and both Molecule scenarios, overlapped where safe; ends with a
# table of where the time went (scripts/test-suite).
test:
	scripts/test-suite

lint: lint-only sanity

lint-only:
	yamllint --strict .
	ruff check .
	ansible-lint --profile production
	antsibull-changelog lint

sanity:
	scripts/sanity

unit:
	pytest -q tests/unit

# Each scenario's output is kept in .lab/; on failure the failing tests are repeated last.
molecule:
	scripts/molecule-scenario default
	scripts/molecule-scenario debian13

# The collection tarball users install (build_ignore in galaxy.yml leaves dev files out).
build: deps
	ansible-galaxy collection build --force --output-path build .

# The README's variable reference, from roles/*/meta/argument_specs.yml.
docs: deps
	scripts/gen-docs

bench: deps
	scripts/bench

clean: lab-down
	rm -rf $(VENV) .ansible .lab build
