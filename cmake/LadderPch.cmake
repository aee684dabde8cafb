# Precompiled headers (docs/BUILD.md): LibTorch's headers are compiled once per flavour instead of once per
# translation unit. Only the translation units that read LibTorch (directly or through a project header)
# use one: a file that reads none keeps its own includes honest (data/ must compile without torch/nn) and
# does not pay for loading a 300 MB header image.
option(LADDER_PCH "Precompiled headers for the translation units that read LibTorch" ON)

# The headers behind the torch-heavy files: ATen, the torch/nn modules T5 and LST are built of, AdamW, JSON.
set(LADDER_PCH_TORCH_HEADERS
  <algorithm> <functional> <map> <memory> <optional> <string> <utility> <vector>
  <ATen/ATen.h> <c10/core/GradMode.h>
  <torch/nn/module.h> <torch/nn/modules/container/modulelist.h> <torch/nn/modules/embedding.h>
  <torch/nn/modules/linear.h> <torch/nn/pimpl.h> <torch/optim/adamw.h>
  <nlohmann/json.hpp>)

# ladder_reads_torch(<out-var> <file>): ON when <file>, or a project header it includes (transitively),
# includes a header of ATen or torch (c10's small headers do not count). Project includes are looked up
# beside the file, then in core/, widgets/ and tests/support/. Results are memoised for the configure run.
function(ladder_reads_torch out file)
  get_property(known GLOBAL PROPERTY "LADDER_TORCH_SCAN:${file}" SET)
  if(known)
    get_property(value GLOBAL PROPERTY "LADDER_TORCH_SCAN:${file}")
    set(${out} ${value} PARENT_SCOPE)
    return()
  endif()
  set_property(GLOBAL PROPERTY "LADDER_TORCH_SCAN:${file}" OFF) # an include circle ends here
  set(result OFF)
  file(STRINGS "${file}" lines REGEX "^[ \t]*#[ \t]*include")
  get_filename_component(here "${file}" DIRECTORY)
  foreach(line IN LISTS lines)
    if(line MATCHES "<(ATen|torch)/")
      set(result ON)
      break()
    endif()
    if(line MATCHES "\"([^\"]+)\"")
      set(name "${CMAKE_MATCH_1}")
      foreach(base "${here}" "${PROJECT_SOURCE_DIR}/core" "${PROJECT_SOURCE_DIR}/widgets"
              "${PROJECT_SOURCE_DIR}/tests/support")
        if(EXISTS "${base}/${name}" AND NOT IS_DIRECTORY "${base}/${name}")
          ladder_reads_torch(sub "${base}/${name}")
          if(sub)
            set(result ON)
          endif()
          break()
        endif()
      endforeach()
      if(result)
        break()
      endif()
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY "LADDER_TORCH_SCAN:${file}" ${result})
  set(${out} ${result} PARENT_SCOPE)
endfunction()

# ladder_precompile(<target> HEADERS <h>... | REUSE_FROM <pch-target>): a precompiled header for the
# target's C++ sources that read LibTorch; the others skip it (loading the 700 MB image costs about 5 s,
# more than a file that reads no LibTorch spends on its own headers). REUSE_FROM shares another target's
# image: GCC uses it only under the same code model (-fPIC) and macros it depends on (-Winvalid-pch says
# when not).
function(ladder_precompile target)
  if(NOT LADDER_PCH)
    return()
  endif()
  cmake_parse_arguments(P "" "REUSE_FROM" "HEADERS" ${ARGN})
  if(P_REUSE_FROM)
    set_target_properties(${target} PROPERTIES PRECOMPILE_HEADERS_REUSE_FROM ${P_REUSE_FROM})
  else()
    target_precompile_headers(${target} PRIVATE ${P_HEADERS})
  endif()
  get_target_property(sources ${target} SOURCES)
  get_target_property(source_dir ${target} SOURCE_DIR)
  foreach(src IN LISTS sources)
    if(NOT src MATCHES "\\.cpp$")
      continue()
    endif()
    if(NOT IS_ABSOLUTE "${src}")
      set(src "${source_dir}/${src}")
    endif()
    ladder_reads_torch(reads "${src}")
    if(NOT reads)
      set_source_files_properties("${src}" TARGET_DIRECTORY ${target} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
endfunction()
