# Compiler settings shared by every target: warnings, ccache, sanitizers.
find_program(CCACHE_EXE ccache)
if(CCACHE_EXE)
  # CCACHE_BASEDIR / CCACHE_NOHASHDIR make a fresh clone in another folder hit the same cache. Every build
  # shares the cache packaging/setup.sh (and so CI) uses, when it exists, unless CCACHE_DIR says otherwise.
  # pch_defines and time_macros let ccache cache the files that use a precompiled header (ccache's manual,
  # "Precompiled headers"; CMake includes it with -include, which ccache needs).
  # LADDER_SOURCE_ROOT: the checkout's root, for a project in a subfolder (tests/fuzz).
  if(NOT LADDER_SOURCE_ROOT)
    set(LADDER_SOURCE_ROOT ${PROJECT_SOURCE_DIR})
  endif()
  set(_ladder_ccache_env CCACHE_BASEDIR=${LADDER_SOURCE_ROOT} CCACHE_NOHASHDIR=1
      CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime,time_macros,pch_defines)
  if(NOT DEFINED ENV{CCACHE_DIR} AND IS_DIRECTORY "/opt/ladderbench/ccache")
    list(APPEND _ladder_ccache_env CCACHE_DIR=/opt/ladderbench/ccache)
  endif()
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env ${_ladder_ccache_env} ${CCACHE_EXE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
  message(STATUS "ccache: ${CCACHE_EXE}")
endif()

# lld links the test executables (each with LibTorch and the static core) 4-5 times faster than GNU ld:
# 0.8 s instead of 3.8 s for test_trainer (docs/BUILD.md). Debian's lld package; GNU ld where it is missing.
option(LADDER_LLD "Link with lld when it is installed" ON)
if(LADDER_LLD)
  find_program(LADDER_LLD_EXE NAMES ld.lld)
  if(LADDER_LLD_EXE)
    add_link_options(-fuse-ld=lld)
    message(STATUS "linker: ${LADDER_LLD_EXE}")
  endif()
endif()

add_library(ladder_warnings INTERFACE)
target_compile_options(ladder_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter)

if(LADDER_ASAN)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr)
  add_link_options(-fsanitize=address,undefined)
endif()
