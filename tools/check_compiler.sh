#!/bin/sh
# Run by `make setup` before it installs anything. The lock pins pyfarmhash 0.3.2
# (tensorflow-data-validation needs < 0.4), which PyPI has for Python 3.11 only as C++ sources.
# Where no C++ compiler works, say which system package to install and exit 1; exit 0 at once
# where the venv already holds the locked pyfarmhash.
#   tools/check_compiler.sh PYTHON LOCK [VENV_PYTHON]
set -eu
python=$1 lock=$2 venv_python=${3:-}

version=$(sed -n 's/^pyfarmhash==//p' "$lock")
[ -n "$version" ] || exit 0
if [ -n "$venv_python" ] && [ -x "$venv_python" ] && [ "$("$venv_python" -c \
    "import importlib.metadata as m; print(m.version('pyfarmhash'))" 2>/dev/null)" = "$version" ]
then
  exit 0
fi

# The compilers setuptools uses: $CC / $CXX, else the ones Python was built with.
config() { "$python" -c "import sysconfig; print(sysconfig.get_config_var('$1') or '$2')"; }
cc=${CC:-$(config CC cc)} cxx=${CXX:-$(config CXX c++)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'int main() { return 0; }\n' > "$tmp/t.cc"
if $cc -c "$tmp/t.cc" -o "$tmp/t.o" > /dev/null 2>&1 && $cxx "$tmp/t.o" -o "$tmp/t" > /dev/null 2>&1
then
  exit 0
fi
cat >&2 << EOF
make setup: pyfarmhash $version (required by tensorflow-data-validation) has no wheel for
Python 3.11 and is compiled from C++ sources, but no C++ compiler works here (tried: $cc, $cxx).
Install one, then run make again:
  Debian/Ubuntu: apt-get install g++      Fedora/RHEL: dnf install gcc-c++
EOF
exit 1
