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

# -DLADDER_ASAN=ON: AddressSanitizer (with LeakSanitizer) and UBSan over everything this project compiles: the
# core, the SentencePiece module, the CLI, the widgets, the window and every test program. LibTorch, Qt, SQLite
# and libsentencepiece are not instrumented (ASan's allocator and interceptors still cover their memory).
# tools/asan.sh builds build/asan and runs the unit suite; docs/RELIABILITY.md "ASan and UBSan" has the result.
# UBSan is built recoverable (a suppression could apply); LADDER_SANITIZER_ENV's halt_on_error=1 makes any
# report end the process. vptr is off: it checks dynamic types against RTTI, and LibTorch's and Qt's
# classes come from libraries built without it.
if(LADDER_ASAN)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize=vptr)
  add_link_options(-fsanitize=address,undefined)
  # The sanitizers' run-time options, given to every test by CTest (tests/CMakeLists.txt); a test passes its
  # environment on to the `ladder` and `ladderbench` processes it starts. A report ends the process with
  # exit status 86, never the 1 of a refused input. ASan's and LSan's reports go to sanitizer/report.EXE.PID
  # in the build folder instead of stderr, where tools/asan.sh finds those of child processes whose stderr a
  # test kept; GCC's libubsan prints to stderr whatever log_path says. libasan reads UBSAN_OPTIONS too, and
  # its log_path there wins: both say the same.
  # allocator_may_return_null: an allocation too large fails as glibc's does (ENOMEM, which LibTorch turns
  # into an exception: test_memory's failedAllocationIsOutOfMemory), instead of ASan's abort above 1 TiB.
  # Each leak suppression in tests/asan/lsan.supp says why.
  set(_ladder_san_log ${CMAKE_BINARY_DIR}/sanitizer/report)
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/sanitizer)
  set(LADDER_SANITIZER_ENV
    "ASAN_OPTIONS=exitcode=86:log_path=${_ladder_san_log}:log_exe_name=1:detect_leaks=1:allocator_may_return_null=1"
    "UBSAN_OPTIONS=halt_on_error=1:exitcode=86:print_stacktrace=1:log_path=${_ladder_san_log}:log_exe_name=1"
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/asan/lsan.supp:print_suppressions=0")
endif()
