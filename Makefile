# Every target sets itself up: the first `make demo` or `make test` on a fresh clone creates
# .venv and installs cvlab (editable, with the dev extra) into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.cvlab-installed

.PHONY: demo test test-unit test-notebooks test-book test-full book lab bench sample clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cvlab)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cvlab demo --out runs/demo

test: test-unit test-notebooks test-book

# Tests marked slow (costly repeats: the rest of the zoo exported, VGG-16 at 224 px) run in test-full only.
test-unit: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow"

# Every lesson top to bottom in a fresh kernel, in quick mode (a failing cell or assert fails the target and names
# the lesson, the cell and the error); the executed lessons then build the reader's edition (book/site), which
# test-book opens in a real browser.
test-notebooks: $(STAMP)
	$(PY) book/build.py --quick --force

test-book: $(STAMP)
	$(PY) -m pytest book/test_site.py -q -p no:cacheprovider

# The reader's edition: every lesson executed in full mode, with its outputs, as a static site in book/site
# (open book/site/index.html). Cached: a rerun executes only the lessons whose cells changed.
book: $(STAMP)
	$(PY) book/build.py

# Every unit test (the slow ones included), then every lesson in full mode (real data sizes and epochs), its
# full-mode asserts included, executed afresh: about 71 minutes on a 2-core CPU (each lesson states its own time
# at its top). Not part of `make test`; it also builds the book.
test-full: $(STAMP)
	$(PY) -m pytest tests -q
	$(PY) book/build.py --force

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

# Speed targets: each script prints RESULT lines, headline last (see README, Benchmarks).
bench: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

sample: $(STAMP)
	$(PY) datasets/make_fashion_mnist_sample.py

clean:
	rm -rf $(VENV) runs .pytest_cache book/_cache book/_docs book/site book/_mkdocs.yml
