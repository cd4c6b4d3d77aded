# ctest: install rnnfast into a scratch prefix, then build and run cpp/examples as an outside
# project that finds it with find_package(rnnfast).
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${BUILD_DIR}/test-install
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "install failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/cpp/examples -B ${BUILD_DIR}/test-consumer
                        -DCMAKE_PREFIX_PATH=${BUILD_DIR}/test-install -DCMAKE_BUILD_TYPE=Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer project failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR}/test-consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer project failed")
endif()
execute_process(COMMAND ${BUILD_DIR}/test-consumer/lstm_example RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer program failed")
endif()
