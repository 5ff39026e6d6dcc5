# cmake -P run_package_test.cmake: installs the build at EDGEWS_BINARY_DIR into a fresh prefix under WORK_DIR,
# then configures, builds and runs the consumer project in CONSUMER_SOURCE_DIR against that prefix only.
foreach(var EDGEWS_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_package_test.cmake needs -D${var}=...")
  endif()
endforeach()

function(run_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${name} failed (${result}):\n${out}\n${err}")
  endif()
  message(STATUS "${name}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/consumer-build")

run_step("install" ${CMAKE_COMMAND} --install "${EDGEWS_BINARY_DIR}" --prefix "${prefix}")
# CMAKE_FIND_USE_PACKAGE_REGISTRY etc. off and only this prefix: the consumer must not find the build tree.
run_step("configure consumer" ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${build}"
         -DCMAKE_BUILD_TYPE=Release
         "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
         "-DCMAKE_PREFIX_PATH=${prefix}"
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
         "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}")
run_step("build consumer" ${CMAKE_COMMAND} --build "${build}")
run_step("run consumer" "${build}/edgews_package_consumer")
if(NOT last_output MATCHES "edgews package ok")
  message(FATAL_ERROR "the consumer did not report success: ${last_output}")
endif()
message(STATUS "${last_output}")
