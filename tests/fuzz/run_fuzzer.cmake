# cmake -DFUZZER=<bin> -DSEEDS=<dir> -DWORK=<dir> -DARTIFACTS=<dir> -DSECONDS=<n> [-DDICT=<file>]
#       -P run_fuzzer.cmake
# Fuzzes a fresh copy of the seed corpus for a bounded time; fails on any crash, leak, timeout
# or sanitizer report.
foreach(var FUZZER SEEDS WORK ARTIFACTS SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: ${var} is not set")
  endif()
endforeach()
if(NOT EXISTS ${FUZZER})
  message(FATAL_ERROR "${FUZZER} is missing: build the default target first (ninja)")
endif()

file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK} ${ARTIFACTS})
file(GLOB seeds ${SEEDS}/*)
file(COPY ${seeds} DESTINATION ${WORK})

set(dict_args)
if(DICT)
  set(dict_args -dict=${DICT})
endif()
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10
          -artifact_prefix=${ARTIFACTS}/ ${dict_args} ${WORK}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc}); the input that broke it is in ${ARTIFACTS}")
endif()
