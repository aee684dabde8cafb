# install() rules and CPack: the Debian package ladderbench_<version>_amd64.deb (docs/PACKAGING.md).
#   cmake --build build/test --target package        (or: cd build/test && cpack -G DEB)
#
# Layout under /usr:
#   bin/ladder, bin/ladderbench           shell wrappers: check LibTorch, then exec the programs below
#   lib/ladderbench/ladder, ladderbench   the programs (RUNPATH: the torch wheel's lib folder in the venv)
#   lib/ladderbench/libladder_spm.so      the SentencePiece module (found beside the program)
#   lib/ladderbench/install-torch         makes the venv with the pinned torch wheel (cpu or cuda)
#   share/applications, share/metainfo, share/icons/hicolor, share/man/man1, share/doc/ladderbench
#
# LibTorch is not in the package: the programs find the torch wheel's libraries in LADDER_PACKAGE_VENV
# (default /opt/ladderbench/venv, the venv packaging/setup.sh makes). docs/PACKAGING.md says why.
include(GNUInstallDirs)

# `cpack` and `cmake --install` package what is built (the programs and the module; test_package.sh builds
# them first) instead of building everything, the 50 test programs included, before they install.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(LADDER_APP_ID "io.github.ladderbench.LadderBench")
set(LADDER_PACKAGE_VENV "/opt/ladderbench/venv" CACHE PATH
  "The venv the installed programs take LibTorch from (their RUNPATH; install-torch makes it)")
set(LADDER_TORCH_CPU_INDEX "https://download.pytorch.org/whl/cpu") # install-torch's CPU wheel (as setup.sh's)
set(LADDER_PRIVATE_LIBDIR "lib/ladderbench") # relative to the prefix (/usr): Debian's place for a package's
                                              # private programs and modules

# The wheel's lib folder inside the package's venv: the same python minor version as the build's venv
# (Debian 12's python3, 3.11), the folder pip puts torch in.
execute_process(
  COMMAND "${LADDER_PYTHON}" -c "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])"
  OUTPUT_VARIABLE LADDER_PACKAGE_PYTHON_VERSION RESULT_VARIABLE _ladder_py_rc)
if(NOT _ladder_py_rc EQUAL 0)
  message(FATAL_ERROR "packaging: ${LADDER_PYTHON} did not report its version")
endif()
set(_ladder_site "${LADDER_PACKAGE_VENV}/lib/python${LADDER_PACKAGE_PYTHON_VERSION}/site-packages")
set(LADDER_PACKAGE_TORCH_LIB "${_ladder_site}/torch/lib")
set(_ladder_install_rpath "${LADDER_PACKAGE_TORCH_LIB}")
# A CUDA build also links the CUDA runtime and NVRTC itself (TorchConfig's CUDA::cudart, CUDA::nvrtc; the
# toolkit's /usr/local/cuda/lib at build time): the installed programs take them from the wheel's
# nvidia/cu<major>/lib, where the wheel's own libraries find them.
if(LADDER_WITH_CUDA)
  string(REGEX MATCH "^[0-9]+" _ladder_cuda_major "${LADDER_TORCH_CUDA_VERSION}")
  list(APPEND _ladder_install_rpath "${_ladder_site}/nvidia/cu${_ladder_cuda_major}/lib")
endif()

# A build with the CUDA code paths (LADDER_WITH_CUDA) links libtorch_cuda: only torch's CUDA wheel runs it (on
# machines without a GPU too); a CPU-only build runs on either wheel.
if(LADDER_WITH_CUDA)
  set(LADDER_PACKAGE_NEEDS_CUDA 1)
else()
  set(LADDER_PACKAGE_NEEDS_CUDA 0)
endif()

# The installed programs: the venv's torch/lib first (LibTorch; with CUDA the wheel's CUDA runtime), then their
# own folder ($ORIGIN). The build
# tree's programs keep CMake's build RPATH; `cmake --install` rewrites it.
set(_ladder_installed_programs ladder)
if(TARGET ladderbench)
  list(APPEND _ladder_installed_programs ladderbench)
endif()
set_target_properties(${_ladder_installed_programs} PROPERTIES
  INSTALL_RPATH "${_ladder_install_rpath};\$ORIGIN")
install(TARGETS ${_ladder_installed_programs} RUNTIME DESTINATION ${LADDER_PRIVATE_LIBDIR})
install(TARGETS ladder_spm LIBRARY DESTINATION ${LADDER_PRIVATE_LIBDIR})

# The wrappers in /usr/bin and install-torch, configured with the paths above.
foreach(_program ladder ladderbench)
  set(LADDER_WRAPPED_PROGRAM ${_program})
  configure_file(${PROJECT_SOURCE_DIR}/packaging/wrapper.sh.in
    ${PROJECT_BINARY_DIR}/packaging/bin/${_program} @ONLY)
endforeach()
install(PROGRAMS ${PROJECT_BINARY_DIR}/packaging/bin/ladder DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET ladderbench)
  install(PROGRAMS ${PROJECT_BINARY_DIR}/packaging/bin/ladderbench DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
configure_file(${PROJECT_SOURCE_DIR}/packaging/install-torch.in
  ${PROJECT_BINARY_DIR}/packaging/install-torch @ONLY)
install(PROGRAMS ${PROJECT_BINARY_DIR}/packaging/install-torch DESTINATION ${LADDER_PRIVATE_LIBDIR})

# The desktop: .desktop file, AppStream metainfo, icons (the SVG and the committed hicolor PNGs).
if(TARGET ladderbench)
  install(FILES ${PROJECT_SOURCE_DIR}/resources/${LADDER_APP_ID}.desktop
    DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
  install(FILES ${PROJECT_SOURCE_DIR}/resources/${LADDER_APP_ID}.metainfo.xml
    DESTINATION ${CMAKE_INSTALL_DATADIR}/metainfo)
  install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/ladderbench.svg
    DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps RENAME ${LADDER_APP_ID}.svg)
  foreach(_size 16 32 48 64 128 256)
    install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/hicolor/${_size}x${_size}/apps/${LADDER_APP_ID}.png
      DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/${_size}x${_size}/apps)
  endforeach()
endif()

# Man pages, generated at install time from the programs' own --help (every subcommand of ladder), gzipped
# with -n (no name or time stamp: the same bytes every time).
set(_ladder_man_args --ladder $<TARGET_FILE:ladder> --version ${PROJECT_VERSION})
if(TARGET ladderbench)
  list(APPEND _ladder_man_args --ladderbench $<TARGET_FILE:ladderbench>)
endif()
install(CODE "
  set(_man \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_MANDIR}/man1\")
  message(STATUS \"Generating the man pages in \${_man}\")
  execute_process(COMMAND \"${CMAKE_COMMAND}\" -E env QT_QPA_PLATFORM=offscreen OMP_NUM_THREADS=1
      python3 \"${PROJECT_SOURCE_DIR}/packaging/make-manpages.py\" ${_ladder_man_args} --out \"\${_man}\" --gzip
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR \"packaging/make-manpages.py failed (exit status \${_rc})\")
  endif()
")
install(FILES ${PROJECT_SOURCE_DIR}/docs/PACKAGING.md DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/ladderbench)

# The release in three places that must agree: project(VERSION), packaging/changelog's first entry (the
# package's changelog.gz, gzipped -9n at install time) and the metainfo's newest <release>.
file(STRINGS ${PROJECT_SOURCE_DIR}/packaging/changelog _ladder_changelog_top LIMIT_COUNT 1)
file(READ ${PROJECT_SOURCE_DIR}/resources/${LADDER_APP_ID}.metainfo.xml _ladder_metainfo)
if(NOT _ladder_changelog_top MATCHES "^ladderbench \\(${PROJECT_VERSION}\\) "
   OR NOT _ladder_metainfo MATCHES "<release version=\"${PROJECT_VERSION}\"")
  message(FATAL_ERROR "packaging: project version ${PROJECT_VERSION} is not the first entry of "
    "packaging/changelog ('${_ladder_changelog_top}') or the newest <release> of "
    "resources/${LADDER_APP_ID}.metainfo.xml: add the release to both")
endif()
install(CODE "
  set(_doc \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DATADIR}/doc/ladderbench\")
  file(MAKE_DIRECTORY \"\${_doc}\")
  execute_process(COMMAND gzip -9n -c \"${PROJECT_SOURCE_DIR}/packaging/changelog\"
    OUTPUT_FILE \"\${_doc}/changelog.gz\" RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR \"gzip of packaging/changelog failed\")
  endif()
  message(STATUS \"Installing: \${_doc}/changelog.gz\")
")

# ---- CPack: the Debian package ----------------------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "ladderbench")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "The LadderBench developers")
set(CPACK_PACKAGE_CONTACT "The LadderBench developers <ladderbench@users.noreply.github.com>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "workbench for memory-efficient fine-tuning of T5 (Ladder Side-Tuning)")
# (Lines under 80 characters: lintian's extended-description-line-too-long.)
set(CPACK_PACKAGE_DESCRIPTION
  "LadderBench fine-tunes HuggingFace T5 models with Ladder Side-Tuning and the
baselines it is compared with (full fine-tuning, BitFit, Adapters, LoRA,
prompt tuning), measures and predicts their training memory, and compares
them in a Qt workbench (ladderbench) and a command-line tool (ladder).
LibTorch is not in this package: /usr/lib/ladderbench/install-torch installs
the torch ${LADDER_TORCH_VERSION} wheel into ${LADDER_PACKAGE_VENV}, where the programs
find it.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT") # ladderbench_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION "science")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/ladderbench/ladderbench")
set(CPACK_DEBIAN_COMPRESSION_TYPE "xz")
# Depends: what dpkg-shlibdeps finds for the programs and the module (Qt 6, QCustomPlot, SQLite, OpenSSL,
# SentencePiece, libstdc++, ...), after these. CPack runs dpkg-shlibdeps with --ignore-missing-info: the
# torch wheel's libraries (found through the RUNPATH) belong to no package, and it only warns about them.
# python3-venv: install-torch makes the venv; wordnet-base: the built-in demo's corpus.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3-venv, wordnet-base")
include(CPack)
