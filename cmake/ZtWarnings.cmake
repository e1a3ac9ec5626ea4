# Warning and sanitizer flags for our own targets (not for third-party headers).
add_library(zt_options INTERFACE)
# Designated initializers (our config style) may omit members that have defaults.
target_compile_options(zt_options INTERFACE -Wall -Wextra -Werror -Wno-unused-parameter
                                            -Wno-missing-field-initializers)
target_compile_definitions(zt_options INTERFACE
  BOOST_ASIO_NO_DEPRECATED
  BOOST_ASIO_SEPARATE_COMPILATION
  BOOST_BEAST_SEPARATE_COMPILATION
  BOOST_ASIO_DISABLE_CONCEPTS)
if(ZT_SANITIZE)
  # -g1 (after the build type's -g, so it wins): line tables and function names, which is what
  # the sanitizers' reports print, without the full debug info that made each object ~12x larger
  # and the test binaries ~2.7 GB to write and link.
  # UBSan's null and alignment checks guard every memory access and cost a quarter of this
  # build's compile time. A null dereference still stops the test (ASan reports the SEGV with
  # its stack), and the parsers of untrusted input keep every check under the fuzzers
  # (tests/fuzz, -fsanitize=fuzzer,address,undefined).
  target_compile_options(zt_options INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                               -fno-sanitize=null,alignment
                                               -fno-sanitize-recover=undefined -g1)
  target_link_options(zt_options INTERFACE -fsanitize=address,undefined)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # g++ 12 warns about Asio's coroutine frames in ways that are not bugs in our code.
  target_compile_options(zt_options INTERFACE -Wno-mismatched-new-delete -Wno-maybe-uninitialized)
endif()

# zt_library(NAME DIR <dir> DEPS <targets...>)
# A static library from every .cc file directly in <dir> (one library per folder, so a folder's
# dependencies are explicit). Headers are included as "common/tls/x.h" from the repository root.
function(zt_library name)
  cmake_parse_arguments(ARG "" "DIR" "DEPS" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${ARG_DIR}/*.cc)
  list(FILTER srcs EXCLUDE REGEX ".*/main\\.cc$")
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} PUBLIC zt_options ${ARG_DEPS})
  else()
    # Header-only folder.
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE zt_options ${ARG_DEPS})
  endif()
endfunction()
