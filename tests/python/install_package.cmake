# Installs the build into PREFIX (emptied first), as a user's `cmake --install` would, for the
# Python tests (tests/python/CMakeLists.txt). Run with cmake -P; BUILD_DIR, PREFIX, CONFIG.
file(REMOVE_RECURSE ${PREFIX})
set(_config)
if(CONFIG)
  set(_config --config ${CONFIG})
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} ${_config}
  RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${PREFIX} failed (${rc})")
endif()
file(GLOB_RECURSE _modules ${PREFIX}/_h20*.so)
if(NOT _modules)
  message(FATAL_ERROR "no h20/_h20*.so installed under ${PREFIX}")
endif()
message(STATUS "installed ${_modules}")
