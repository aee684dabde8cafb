// The unit tests' precompiled header (tests/CMakeLists.txt, ladder_test_pch): compiled with no path of
// this checkout among its flags, so that its image, and every test compiled with it, hits the compiler
// cache from a fresh clone in any folder (docs/BUILD.md). This file only gives the target a source.
#include <ATen/ATen.h>
