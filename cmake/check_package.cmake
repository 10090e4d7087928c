# Installs sdlens from BUILD_DIR into a fresh prefix and builds SOURCE_DIR/test_package against it
# with find_package(sdlens CONFIG REQUIRED), then runs the result.
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
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/test_package -B ${WORK_DIR}/build
                        -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring test_package against the installed sdlens failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building test_package against the installed sdlens failed")
endif()
execute_process(COMMAND ${WORK_DIR}/build/test_package RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "test_package ran but failed")
endif()
