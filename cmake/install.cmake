# Installing icae: libraries, public headers, the command-line tool and a CMake package, so that
# another project can write
#   find_package(icae REQUIRED)
#   target_link_libraries(app PRIVATE icae::icae)
# (examples/ is such a project; tests/install builds one against a temporary prefix).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# The same names inside this build as in an installed package.
add_library(icae::icae ALIAS icae)
add_library(icae::icae_text ALIAS icae_text)

# Headers: the source tree while building, <prefix>/include once installed.
foreach(target icae icae_text)
  set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES
    "$<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>;$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>")
endforeach()

install(TARGETS icae icae_text EXPORT icaeTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS icae_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT icaeTargets NAMESPACE icae:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/icae)

# What the config must find again for the exported link interface: libtorch (where this build
# found it, unless the consumer says otherwise), OpenMP, nlohmann_json, and the static
# libraries' private dependencies (PCRE2, ICU, the CUDA runtime).
set(ICAE_TORCH_DIR "${Torch_DIR}")
set(ICAE_HAVE_ICU ${ICU_FOUND})
set(ICAE_WITH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES)
  set(ICAE_WITH_CUDA ON)
endif()
configure_package_config_file(cmake/icaeConfig.cmake.in ${CMAKE_BINARY_DIR}/icaeConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/icae)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/icaeConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/icaeConfig.cmake ${CMAKE_BINARY_DIR}/icaeConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/icae)
