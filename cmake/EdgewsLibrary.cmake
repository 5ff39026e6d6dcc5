# edgews_library(NAME <codec|net|core> SOURCES ... HEADERS ... DEPS ...)
# Defines edgews_<name> with alias edgews::<name>, installs it and its headers under include/edgews/<name>/.
function(edgews_library)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;HEADERS;DEPS;PRIVATE_DEPS" ${ARGN})
  set(target edgews_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SOURCES})
  add_library(edgews::${ARG_NAME} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${ARG_NAME} OUTPUT_NAME edgews_${ARG_NAME})
  # Sources include "codec/frame.hpp"; installed consumers include <edgews/codec/frame.hpp> or "codec/frame.hpp".
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/edgews>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(${target} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS} $<BUILD_INTERFACE:edgews_warnings>)
  install(TARGETS ${target} EXPORT edgewsTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(FILES ${ARG_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/edgews/${ARG_NAME})
endfunction()
