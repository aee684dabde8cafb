# Compiler settings shared by every target: warnings, ccache, sanitizers.
find_program(CCACHE_EXE ccache)
if(CCACHE_EXE)
  # CCACHE_BASEDIR / CCACHE_NOHASHDIR make a fresh clone in another folder hit the same cache. Every build
  # shares the cache packaging/setup.sh (and so CI) uses, when it exists, unless CCACHE_DIR says otherwise.
  # pch_defines and time_macros let ccache cache the files that use a precompiled header (ccache's manual,
  # "Precompiled headers"; CMake includes it with -include, which ccache needs).
  set(_ladder_ccache_env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_NOHASHDIR=1
      CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime,time_macros,pch_defines)
  if(NOT DEFINED ENV{CCACHE_DIR} AND IS_DIRECTORY "/opt/ladderbench/ccache")
    list(APPEND _ladder_ccache_env CCACHE_DIR=/opt/ladderbench/ccache)
  endif()
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CMAKE_COMMAND} -E env ${_ladder_ccache_env} ${CCACHE_EXE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CMAKE_CXX_COMPILER_LAUNCHER})
  message(STATUS "ccache: ${CCACHE_EXE}")
endif()

add_library(ladder_warnings INTERFACE)
target_compile_options(ladder_warnings INTERFACE -Wall -Wextra -Wno-unused-parameter)

if(LADDER_ASAN)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr)
  add_link_options(-fsanitize=address,undefined)
endif()
