# lwIP, the guest's TCP/IP stack: Debian's source package (lwip
# 2.1.3+dfsg1-2), fetched into this build tree's _deps by
# scripts/fetch_lwip.sh at configure time (scripts/setup.sh does it ahead
# for build/); none of it is in this repository. Sets DIR_VAR to lwIP's
# directory and SOURCES_VAR to the files the guest builds: the core, IPv4
# and the Ethernet layer. Used by guest/ and by fuzz/ (the host build).
function(ftvm_lwip DIR_VAR SOURCES_VAR)
  set(deps ${CMAKE_BINARY_DIR}/_deps)
  if(NOT EXISTS ${deps}/lwip/src/core/tcp.c)
    execute_process(COMMAND sh ${PROJECT_SOURCE_DIR}/scripts/fetch_lwip.sh ${deps} RESULT_VARIABLE rc)
    if(rc)
      message(FATAL_ERROR "lwIP: scripts/fetch_lwip.sh ${deps} failed (network, or run scripts/setup.sh)")
    endif()
  endif()
  file(GLOB srcs ${deps}/lwip/src/core/*.c ${deps}/lwip/src/core/ipv4/*.c)
  list(APPEND srcs ${deps}/lwip/src/netif/ethernet.c)
  set(${DIR_VAR} ${deps}/lwip PARENT_SCOPE)
  set(${SOURCES_VAR} ${srcs} PARENT_SCOPE)
endfunction()
