# Sourced by gpu_check.sh and train_default_gpu.sh (bash): install this working tree beside the
# machine's own torch, never downloading. Expects ROOT (the checkout), PY (the interpreter that
# has torch), WHEELS (the wheel folder; how to fill it: the top of gpu_check.sh) and START
# (date +%s); `gpu_install NAME` installs into a temporary virtual environment (removed on exit)
# that sees PY's packages through a .pth file, from a copy of the working tree, and sets PY to
# that environment's python.
gpu_install() {
  local name="$1"
  GPU_TMP="$(mktemp -d)"
  trap 'rm -rf "$GPU_TMP"' EXIT
  echo "[$name] installing into $GPU_TMP/venv (wheels from $WHEELS)"
  local vpy="$GPU_TMP/venv/bin/python"
  # No pip (nor an old bundled setuptools) in the venv: PY's pip fills it (pip >= 22.3).
  "$PY" -m venv --without-pip "$GPU_TMP/venv"
  local pip=("$PY" -m pip --python "$vpy")
  # PY's own site-packages after the venv's: torch (and whatever else PY has) stays visible.
  "$PY" -c "import site; print('\n'.join(site.getsitepackages() + [site.getusersitepackages()]))" \
    > "$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer.pth"
  mkdir -p "$WHEELS"
  pip+=(install --quiet --disable-pip-version-check --no-index --find-links "$WHEELS")
  "${pip[@]}" -r "$ROOT/scripts/gpu_check_requirements.txt" || {
    echo "$name: missing wheels in $WHEELS; fill it beforehand (see the top of" \
      "scripts/gpu_check.sh)" >&2
    exit 2
  }
  mkdir "$GPU_TMP/src"
  cp -r "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/ganspace" \
    "$ROOT/server" "$GPU_TMP/src/"
  mkdir -p "$GPU_TMP/src/models/default"
  for f in README.md model.json generator.safetensors meta.json directions.safetensors; do
    cp "$ROOT/models/default/$f" "$GPU_TMP/src/models/default/"
  done
  "${pip[@]}" --no-deps --no-build-isolation "$GPU_TMP/src"
  PY="$vpy"
  echo "[$name] installed in $(( $(date +%s) - START )) s"
}
