# Installs sdlens from BUILD_DIR into a fresh prefix and builds SOURCE_DIR/test_package against it
# with find_package(sdlens CONFIG REQUIRED), then runs the result: once header-only, and once
# against the compiled library when COMPILED is true.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install into ${prefix} failed")
endif()
if(NOT EXISTS ${prefix}/share/cmake/sdlens/sdlensConfig.cmake)
  message(FATAL_ERROR "sdlensConfig.cmake was not installed")
endif()

set(modes header-only)
if(COMPILED)
  list(APPEND modes compiled)
endif()
foreach(mode IN LISTS modes)
  set(build ${WORK_DIR}/build-${mode})
  set(compiled_flag OFF)
  # Header-only: the consumer compiles the forward pass and the solvers itself; without -O it
  # takes a third of the time, and what is checked (it compiles, links and computes) is the same.
  set(build_type "")
  if(mode STREQUAL "compiled")
    set(compiled_flag ON)
    set(build_type Release)
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/test_package -B ${build}
                          -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=${build_type}
                          -DSDLENS_TEST_COMPILED=${compiled_flag}
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "configuring test_package (${mode}) against the installed sdlens failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "building test_package (${mode}) against the installed sdlens failed")
  endif()
  execute_process(COMMAND ${build}/test_package RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "test_package (${mode}) ran but failed")
  endif()
endforeach()
