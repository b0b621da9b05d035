# Default CUDA architectures for libshfan_plugins (used only without -DCMAKE_CUDA_ARCHITECTURES).
#
#   * cross-compiling, or building on a Jetson (/etc/nv_tegra_release): the Jetson list for the
#     toolkit: 72;87 (Xavier, Orin) with CUDA 12, 87;110 (Orin, Thor) with CUDA >= 13 (CUDA 13
#     dropped sm_72; sm_110 first appeared in it);
#   * elsewhere the build machine's own GPU, because an engine builds fine on a GPU the kernel was
#     not compiled for and only fails at inference ("no kernel image"): `native` on CMake >= 3.24,
#     nvidia-smi's compute_cap on older CMake;
#   * no GPU visible (a CI box): 75;80;86;89 as machine code plus 90 with PTX, so any Turing or
#     newer GPU runs it.
#
# Script mode prints the choice, for the tests:
#   cmake -DSHFAN_CUDA_VERSION=12.6 [-DSHFAN_TEGRA_RELEASE=FILE] [-DCMAKE_CROSSCOMPILING=ON] -P ShfanCudaArchitectures.cmake

function(shfan_default_cuda_architectures out_var cuda_version)
  if(NOT DEFINED SHFAN_TEGRA_RELEASE)
    set(SHFAN_TEGRA_RELEASE /etc/nv_tegra_release)
  endif()
  if(cuda_version VERSION_LESS 13)
    set(jetson 72 87)
  else()
    set(jetson 87 110)
  endif()
  if(CMAKE_CROSSCOMPILING)
    set(${out_var} ${jetson} PARENT_SCOPE)
    set(SHFAN_CUDA_ARCH_REASON "cross-compiling: the Jetson list for CUDA ${cuda_version}" PARENT_SCOPE)
    return()
  endif()
  if(EXISTS "${SHFAN_TEGRA_RELEASE}")
    set(${out_var} ${jetson} PARENT_SCOPE)
    set(SHFAN_CUDA_ARCH_REASON "Jetson (${SHFAN_TEGRA_RELEASE}): the Jetson list for CUDA ${cuda_version}" PARENT_SCOPE)
    return()
  endif()
  find_program(SHFAN_NVIDIA_SMI nvidia-smi)
  set(found "")
  if(SHFAN_NVIDIA_SMI)
    execute_process(COMMAND "${SHFAN_NVIDIA_SMI}" --query-gpu=compute_cap --format=csv,noheader
      OUTPUT_VARIABLE caps RESULT_VARIABLE rc ERROR_QUIET TIMEOUT 30)
    if(rc EQUAL 0)
      string(REGEX MATCHALL "[0-9]+\\.[0-9]+" caps "${caps}")
      foreach(cap IN LISTS caps)
        string(REPLACE "." "" sm "${cap}")
        list(APPEND found ${sm})
      endforeach()
      list(REMOVE_DUPLICATES found)
    endif()
  endif()
  unset(SHFAN_NVIDIA_SMI CACHE)
  if(found)
    if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.24)
      set(${out_var} native PARENT_SCOPE)
    else()
      set(${out_var} ${found} PARENT_SCOPE)
    endif()
    list(JOIN found ", sm_" joined)
    set(SHFAN_CUDA_ARCH_REASON "this machine's GPU (sm_${joined})" PARENT_SCOPE)
    return()
  endif()
  set(${out_var} 75-real 80-real 86-real 89-real 90 PARENT_SCOPE)
  set(SHFAN_CUDA_ARCH_REASON "no GPU visible here: Turing and newer (pass -DCMAKE_CUDA_ARCHITECTURES=NN for one GPU)" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  shfan_default_cuda_architectures(archs "${SHFAN_CUDA_VERSION}")
  message("${archs}|${SHFAN_CUDA_ARCH_REASON}")
endif()
