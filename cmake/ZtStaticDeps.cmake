# Static third-party libraries for the executables that run on every node.
#
# A shared library costs resident memory in every process that maps it: its relocated data, its
# GOT, and every code page the process touches (plus the neighbours the kernel's fault-around maps
# with it). An executable that links Debian's static archives instead carries only the objects it
# uses, packed together, so it touches fewer pages. ztunnel opts in (issue 7: ztunnel RSS target).
#
# How: the libraries name the zt_dep_* interface targets below instead of the packages' own
# targets. Each one links the static archives when the executable being linked has the target
# property ZT_STATIC_DEPS set, and the shared libraries otherwise, so tests and the other
# programs are unchanged. zt_static_executable(<target>) sets the property. glibc stays shared
# (NSS and getaddrinfo need it), and so does libstdc++ while a shared C++ library is linked:
# two copies of libstdc++ in one process are not safe.
option(ZT_STATIC_DEPS "Link ztunnel's third-party libraries statically (lower RSS)" ON)

set(zt_static_lib_dir /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE})

# Every function and variable of our own code (and of the generated protobuf code) in its own
# section, as Debian's archives already have theirs, so that --gc-sections below also drops what
# the static executables do not use of our libraries: ztunnel's .text shrinks by about 0.3 MB,
# and its RSS by about as much. Not in the sanitizer build, which links nothing statically.
if(ZT_STATIC_DEPS AND NOT ZT_SANITIZE)
  add_compile_options(-ffunction-sections -fdata-sections)
endif()

include(CheckLinkerFlag)
check_linker_flag(CXX -Wl,-z,pack-relative-relocs ZT_LINKER_HAS_RELR)

# zt_static_dep(<name> SHARED <targets...> STATIC <archive file names...> [SYSTEM <libs...>])
# STATIC archives are looked up in the multiarch library directory, in link order; SYSTEM
# libraries (dl, pthread) follow them. When an archive is missing the shared targets are used.
function(zt_static_dep name)
  cmake_parse_arguments(arg "" "" "SHARED;STATIC;SYSTEM" ${ARGN})
  add_library(${name} INTERFACE)
  set(archives)
  foreach(a ${arg_STATIC})
    if(NOT EXISTS ${zt_static_lib_dir}/${a})
      set(archives)
      break()
    endif()
    list(APPEND archives ${zt_static_lib_dir}/${a})
  endforeach()
  if(NOT ZT_STATIC_DEPS OR NOT archives)
    target_link_libraries(${name} INTERFACE ${arg_SHARED})
    return()
  endif()
  set(static "$<BOOL:$<TARGET_PROPERTY:ZT_STATIC_DEPS>>")
  # Compile-time usage requirements (include directories, definitions) always come from the
  # packages' targets; only what is linked differs.
  # (Copied now: a package's imported targets may be visible only in this directory.)
  foreach(t ${arg_SHARED})
    target_link_libraries(${name} INTERFACE "$<$<NOT:${static}>:${t}>")
    if(TARGET ${t})
      get_target_property(dirs ${t} INTERFACE_INCLUDE_DIRECTORIES)
      get_target_property(defs ${t} INTERFACE_COMPILE_DEFINITIONS)
      if(dirs)
        target_include_directories(${name} SYSTEM INTERFACE ${dirs})
      endif()
      if(defs)
        target_compile_definitions(${name} INTERFACE ${defs})
      endif()
    endif()
  endforeach()
  foreach(a ${archives} ${arg_SYSTEM})
    target_link_libraries(${name} INTERFACE "$<${static}:${a}>")
  endforeach()
endfunction()

# Code layout from a profile (TEXT_ORDER below). The kernel maps a program's code 64 KiB at a time
# around each page it touches (fault-around), and all of it counts in the RSS. ztunnel runs about
# 1.6 MB of its 5.8 MB of code, spread over nearly all of it; linked with the functions a real run
# executed first (lld's --symbol-ordering-file; GNU ld 2.40 has no equivalent), about 3.5 MB of its
# code is resident instead of 5.4 MB. lld 15 or later: -z pack-relative-relocs (DT_RELR with the
# GLIBC_ABI_DT_RELR dependency glibc requires) is new in 15. Debian 12 has lld 16 (lld-16).
option(ZT_TEXT_ORDER "Link ztunnel with lld in the order of ztunnel/text-order.txt (lower RSS)" ON)
set(zt_text_order_linker_dir)
# find_program's validator: an lld of version 15 or later.
function(zt_check_lld result candidate)
  execute_process(COMMAND ${candidate} --version OUTPUT_VARIABLE zt_out ERROR_QUIET)
  if(NOT zt_out MATCHES "LLD ([0-9]+)" OR CMAKE_MATCH_1 LESS 15)
    set(${result} FALSE PARENT_SCOPE)
  endif()
endfunction()
if(ZT_TEXT_ORDER AND ZT_STATIC_DEPS AND NOT ZT_SANITIZE)
  # find_program does not check a cached result: one that is too old (or gone) is searched again.
  if(ZT_LLD)
    set(zt_lld_ok TRUE)
    zt_check_lld(zt_lld_ok ${ZT_LLD})
    if(NOT zt_lld_ok)
      unset(ZT_LLD CACHE)
    endif()
  endif()
  find_program(ZT_LLD NAMES ld.lld-16 ld.lld-17 ld.lld-18 ld.lld-19 ld.lld-20 ld.lld-15 ld.lld
               VALIDATOR zt_check_lld)
  if(ZT_LLD)
    # g++ 12 has no --ld-path; -fuse-ld=lld runs the first ld.lld on its -B prefix.
    set(zt_text_order_linker_dir ${CMAKE_BINARY_DIR}/text-order-linker)
    file(MAKE_DIRECTORY ${zt_text_order_linker_dir})
    file(CREATE_LINK ${ZT_LLD} ${zt_text_order_linker_dir}/ld.lld SYMBOLIC)
  else()
    message(WARNING "ztunnel's code layout from a profile needs lld 15 or later (scripts/setup.sh "
                    "installs lld-16); linking it in the default order, which leaves about 2 MB "
                    "more of it resident. -DZT_TEXT_ORDER=OFF says that is intended.")
  endif()
endif()

# zt_static_executable(<target> [RUNTIME] [TEXT_ORDER <file>]): link <target>'s zt_dep_* libraries
# statically (when ZT_STATIC_DEPS is ON; the sanitizer build keeps everything shared). RUNTIME:
# libstdc++ and libgcc too, for a program that maps no shared C++ library at all (ztunnel; the
# waypoint maps libre2). TEXT_ORDER: lay its functions out in the order of <file>, one symbol per
# line (scripts/text-order.sh writes it), when lld 15+ is there (above). The target property
# ZT_TEXT_ORDER_FILE then names <file>; ZT_TEXT_ORDER_NO_LLD is set when the layout was wanted but
# no such lld was found (tests/integration/grpc_client checks the layout).
function(zt_static_executable target)
  cmake_parse_arguments(arg "RUNTIME" "TEXT_ORDER" "" ${ARGN})
  if(ZT_STATIC_DEPS AND NOT ZT_SANITIZE)
    set_target_properties(${target} PROPERTIES ZT_STATIC_DEPS ON)
    # Drop the archives' unreferenced sections (protobuf and libstdc++ have one per function).
    target_link_options(${target} PRIVATE -Wl,--gc-sections)
    # Relative relocations as a bitmap (DT_RELR, glibc 2.36) instead of 24 bytes each: ztunnel's
    # .rela.dyn, read by the dynamic loader at every start, shrinks from ~680 KB to a few KB.
    if(ZT_LINKER_HAS_RELR)
      target_link_options(${target} PRIVATE -Wl,-z,pack-relative-relocs)
    endif()
    if(arg_RUNTIME)
      target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc)
    endif()
    if(arg_TEXT_ORDER AND zt_text_order_linker_dir)
      # Names missing from the program (the list is older than the code) are skipped quietly.
      target_link_options(${target} PRIVATE -B${zt_text_order_linker_dir}/ -fuse-ld=lld
                          -Wl,--symbol-ordering-file=${arg_TEXT_ORDER}
                          -Wl,--no-warn-symbol-ordering)
      set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${arg_TEXT_ORDER} ${ZT_LLD})
      set_property(TARGET ${target} PROPERTY ZT_TEXT_ORDER_FILE ${arg_TEXT_ORDER})
    elseif(arg_TEXT_ORDER AND ZT_TEXT_ORDER)
      set_property(TARGET ${target} PROPERTY ZT_TEXT_ORDER_NO_LLD ON)
    endif()
  endif()
endfunction()

zt_static_dep(zt_dep_openssl SHARED OpenSSL::SSL OpenSSL::Crypto
              STATIC libssl.a libcrypto.a SYSTEM dl Threads::Threads)
zt_static_dep(zt_dep_nghttp2 SHARED PkgConfig::NGHTTP2 STATIC libnghttp2.a)
zt_static_dep(zt_dep_yaml SHARED yaml-cpp STATIC libyaml-cpp.a)
