# Every target sets itself up: the first `make demo` or `make test` on a fresh clone creates
# .venv and installs cvlab (editable, with the dev extra) into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cvlab-installed

.PHONY: demo test test-unit test-notebooks test-full lab bench sample clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cvlab)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cvlab demo --out runs/demo

test: test-unit test-notebooks

test-unit: $(STAMP)
	$(PY) -m pytest tests -q

# nbval executes every lesson top to bottom in quick mode; --nbval-lax checks that cells run, not their outputs.
test-notebooks: $(STAMP)
	CVLAB_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest --nbval-lax --nbval-current-env --durations=0 -q -p no:cacheprovider notebooks

# Every lesson in full mode (real data sizes and epochs), its full-mode asserts included: an hour or more on a
# 2-core CPU (each lesson states its own time at its top). Not part of `make test`.
test-full: $(STAMP)
	CVLAB_QUICK=0 MPLBACKEND=Agg $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=7200 --durations=0 -q \
		-p no:cacheprovider notebooks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# Speed targets: each script prints RESULT lines, headline last (see README, Benchmarks).
bench: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

sample: $(STAMP)
	$(PY) datasets/make_fashion_mnist_sample.py

clean:
	rm -rf $(VENV) runs .pytest_cache
