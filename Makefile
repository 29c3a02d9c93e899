# dasslib: two commands on a fresh machine.
#   make demo   install, then run notebooks/04_niah.ipynb with its small defaults (writes outputs/04_niah/)
#   make test   install, then ruff, pytest and pytest --nbval on copies of notebooks/
PY     ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg

.PHONY: install demo test lint test-unit test-notebooks notebooks lab clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# tinysoundfont declares pyaudio (playback only, needs portaudio to build): not needed to render
	$(BIN)/python -m pip install --quiet --no-deps tinysoundfont==0.3.7
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -c "import dasslib, torch, torchaudio; print('dasslib', dasslib.__version__, 'torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
	touch $(STAMP)

demo: install
	mkdir -p outputs
	$(BIN)/papermill notebooks/04_niah.ipynb outputs/04_niah.ipynb -p out_dir outputs/04_niah
	@echo "figures and tables in outputs/04_niah/"

test: lint test-unit test-notebooks

# ruff (pinned in requirements.txt; settings in pyproject.toml)
lint: install
	$(BIN)/ruff check .

# Two pytest workers (pytest-xdist) with one thread each: on CI's two cores 358 s against 819 s for one
# process with two threads (2026-12-08; the Triton-interpreter files dominate, single-threaded Python).
PYTEST_WORKERS ?= 2
test-unit: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --durations=15

# Stored notebook outputs are checked with progress bars off (TQDM_DISABLE) and install paths sanitized.
# On a clean slate: copies of the notebooks run in NBRUN, emptied first, so no dataset, statistics or finished
# run cached under notebooks/ (data/, outputs/) is reused; a clean clone and a used working tree agree.
NBRUN  := .nbval-run
NBVAL := TQDM_DISABLE=1 $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider --nbval \
         --nbval-sanitize-with $(CURDIR)/nbval_sanitize.cfg --nbval-cell-timeout 1200

# Tables of small models trained on the CPU whose rounding follows the x86 vendor (cells tagged
# nbval-ignore-output) are compared with tests/golden/notebooks/ within a tolerance instead.
test-notebooks: install
	rm -rf $(NBRUN) && mkdir -p $(NBRUN) && cp notebooks/0*.ipynb $(NBRUN)/
	cd $(NBRUN) && $(NBVAL) --rootdir . .
	$(BIN)/python scripts/check_notebook_tables.py $(NBRUN)/outputs

# Re-execute every notebook with its defaults on a clean slate (as test-notebooks does) and store the executed
# copies in notebooks/ (refreshes the outputs that nbval compares).
notebooks: install
	rm -rf $(NBRUN) && mkdir -p $(NBRUN) && cp notebooks/0*.ipynb $(NBRUN)/
	cd $(NBRUN) && for nb in 0*.ipynb; do TQDM_DISABLE=1 $(CURDIR)/$(BIN)/papermill --no-progress-bar $$nb $$nb || exit 1; done
	cp $(NBRUN)/0*.ipynb notebooks/

lab: install
	$(BIN)/python -m pip install --quiet jupyterlab==4.6.6
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) outputs .pytest_cache $(NBRUN)
