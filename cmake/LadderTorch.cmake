# LibTorch from the PyPI `torch` wheel installed in ${LADDER_VENV} (see packaging/setup.sh).
# The prefix comes from torch.utils.cmake_prefix_path (docs/PITFALLS.md: not Debian's libtorch-dev).
# LADDER_PYTHON: a python with the torch wheel outside such a venv (the GPU kit's machine).
set(LADDER_PYTHON "${LADDER_VENV}/bin/python" CACHE FILEPATH "Python whose torch provides LibTorch")
set(_ladder_python "${LADDER_PYTHON}")
if(NOT EXISTS "${_ladder_python}")
  message(FATAL_ERROR "LibTorch: no Python at ${_ladder_python}. Run packaging/setup.sh first, "
                      "or pass -DLADDER_VENV=<venv holding the torch wheel>.")
endif()
execute_process(
  COMMAND "${_ladder_python}" -c "import torch,sys; sys.stdout.write(torch.utils.cmake_prefix_path + ';' + str(torch.version.cuda) + ';' + torch.__version__.split('+')[0])"
  OUTPUT_VARIABLE _ladder_torch_query RESULT_VARIABLE _ladder_torch_rc ERROR_QUIET)
if(NOT _ladder_torch_rc EQUAL 0)
  message(FATAL_ERROR "LibTorch: `import torch` failed in ${_ladder_python}")
endif()
list(GET _ladder_torch_query 0 LADDER_TORCH_CMAKE_PREFIX)
list(GET _ladder_torch_query 1 LADDER_TORCH_CUDA_VERSION)
list(GET _ladder_torch_query 2 LADDER_TORCH_VERSION)
list(APPEND CMAKE_PREFIX_PATH "${LADDER_TORCH_CMAKE_PREFIX}")

if(LADDER_WITH_CUDA STREQUAL "AUTO")
  if(LADDER_TORCH_CUDA_VERSION STREQUAL "None" OR NOT EXISTS "/usr/local/cuda/bin/nvcc")
    set(LADDER_WITH_CUDA OFF)
  else()
    set(LADDER_WITH_CUDA ON)
  endif()
endif()
if(LADDER_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS "/usr/local/cuda/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "/usr/local/cuda/bin/nvcc")
  endif()
  if(NOT CUDAToolkit_ROOT AND EXISTS "/usr/local/cuda")
    set(CUDAToolkit_ROOT "/usr/local/cuda")
  endif()
  # No GPU here, so the architecture cannot be detected: name the H200's (sm_90) explicitly.
  if(NOT TORCH_CUDA_ARCH_LIST)
    set(TORCH_CUDA_ARCH_LIST "9.0")
  endif()
endif()

if(LADDER_WITH_CUDA)
  find_package(Torch REQUIRED)
  # TorchConfig's TORCH_LIBRARIES carries compile flags we do not want on every consumer; wrap it once.
  add_library(ladder_torch INTERFACE)
  target_link_libraries(ladder_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(ladder_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
else()
  # CPU-only build. The CUDA wheel's TorchConfig insists on a CUDA toolkit (USE_CUDA is baked in), which
  # a fresh Debian machine does not have; the CPU half of LibTorch (libtorch_cpu, libc10) needs none, so
  # import it directly from the wheel.
  get_filename_component(_ladder_torch_root "${LADDER_TORCH_CMAKE_PREFIX}/../.." ABSOLUTE)
  foreach(_lib torch_cpu c10)
    find_library(LADDER_TORCH_${_lib}_LIBRARY NAMES ${_lib} PATHS "${_ladder_torch_root}/lib" NO_DEFAULT_PATH REQUIRED)
  endforeach()
  add_library(ladder_torch INTERFACE)
  target_include_directories(ladder_torch SYSTEM INTERFACE
    "${_ladder_torch_root}/include" "${_ladder_torch_root}/include/torch/csrc/api/include")
  target_link_libraries(ladder_torch INTERFACE ${LADDER_TORCH_torch_cpu_LIBRARY} ${LADDER_TORCH_c10_LIBRARY})
  set_target_properties(ladder_torch PROPERTIES INTERFACE_LINK_DIRECTORIES "${_ladder_torch_root}/lib")
endif()
message(STATUS "LibTorch ${LADDER_TORCH_VERSION} from ${LADDER_TORCH_CMAKE_PREFIX}; CUDA ${LADDER_TORCH_CUDA_VERSION}; LADDER_WITH_CUDA=${LADDER_WITH_CUDA}")
