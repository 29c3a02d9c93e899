# dasslib: two commands on a fresh machine.
#   make demo   install, then run notebooks/04_niah.ipynb with its small defaults (writes outputs/04_niah/)
#   make test   install, then pytest and pytest --nbval notebooks/
PY     ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg

.PHONY: install demo test test-unit test-notebooks lab clean

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

test: test-unit test-notebooks

test-unit: install
	$(BIN)/python -m pytest -q

# exit code 5 = no notebook collected yet: reported, not an error
test-notebooks: install
	$(BIN)/python -m pytest -q --nbval notebooks/ ; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no notebooks to check yet"; exit 0; fi; exit $$rc

lab: install
	$(BIN)/python -m pip install --quiet jupyterlab==4.6.6
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) outputs .pytest_cache
