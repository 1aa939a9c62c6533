# Installation in FHS places and the Debian package (CPack DEB), included by the top-level
# CMakeLists.txt. `cmake --install build` installs; `cpack -G DEB` in the build directory packages
# what is already built (docs/operations.md).
include(GNUInstallDirs)

# Where systemd looks for units and sysusers files on Debian 12 (its systemd.pc says the same).
set(SWEEPD_SYSTEMD_UNIT_DIR "/lib/systemd/system" CACHE PATH "systemd system unit directory")
set(SWEEPD_SYSUSERS_DIR "/usr/lib/sysusers.d" CACHE PATH "sysusers.d directory")
set(SWEEPD_SBIN_DIR "${CMAKE_INSTALL_FULL_SBINDIR}")
set(SWEEPD_CONFIG_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/sweepd")
set(SWEEPD_DOC_DIR "${CMAKE_INSTALL_DATADIR}/doc/sweepd")

configure_file(systemd/sweepd.service.in ${CMAKE_BINARY_DIR}/systemd/sweepd.service @ONLY)
configure_file(systemd/sweepd.socket ${CMAKE_BINARY_DIR}/systemd/sweepd.socket COPYONLY)

# Man pages and the changelog are installed gzipped (-n: no name or time stamp, so the package is
# reproducible), as Debian policy wants.
find_program(GZIP gzip REQUIRED)
set(sweepd_gzipped)
foreach(page man/sweepd.8 man/sweepctl.1 packaging/debian/changelog)
  get_filename_component(name ${page} NAME)
  set(out ${CMAKE_BINARY_DIR}/man/${name}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND ${GZIP} -9n -c ${PROJECT_SOURCE_DIR}/${page} > ${out}
    DEPENDS ${PROJECT_SOURCE_DIR}/${page} VERBATIM)
  list(APPEND sweepd_gzipped ${out})
endforeach()
add_custom_target(sweepd_docs ALL DEPENDS ${sweepd_gzipped})

install(TARGETS sweepd DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS sweepctl DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/systemd/sweepd.service ${CMAKE_BINARY_DIR}/systemd/sweepd.socket
        DESTINATION ${SWEEPD_SYSTEMD_UNIT_DIR})
install(FILES systemd/sweepd.sysusers DESTINATION ${SWEEPD_SYSUSERS_DIR} RENAME sweepd.conf)
install(FILES config/sweepd.yaml DESTINATION ${SWEEPD_CONFIG_DIR})
install(FILES ${CMAKE_BINARY_DIR}/man/sweepd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${CMAKE_BINARY_DIR}/man/sweepctl.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES contrib/bash-completion/sweepctl
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES README.md docs/protocol.md docs/operations.md docs/SECURITY.md docs/spool.md
              docs/benchmarks.md packaging/debian/copyright
        DESTINATION ${SWEEPD_DOC_DIR})
install(FILES ${CMAKE_BINARY_DIR}/man/changelog.gz DESTINATION ${SWEEPD_DOC_DIR})
install(FILES contrib/prometheus/sweepd-rules.yml contrib/prometheus/sweepd-rules.test.yml
        DESTINATION ${SWEEPD_DOC_DIR}/examples)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sweepd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "supervisor for the runs of hyperparameter sweeps")
set(CPACK_PACKAGE_DESCRIPTION
    "sweepd keeps one state machine per run of a hyperparameter sweep.\n\
Workers report over a local Unix socket that a run registered, started,\n\
is alive, finished or failed; silent or dead runs become timeout or\n\
crashed on sweepd's own clock. Every transition is stored before it is\n\
acknowledged and written to the run's Weights & Biases summary.\n\
Includes sweepctl, systemd units with a watchdog and socket activation,\n\
and a Prometheus metrics endpoint.")
# Whoever builds the package for their machines puts their own address here.
set(SWEEPD_PACKAGE_MAINTAINER "sweepd maintainers <sweepd@example.org>"
    CACHE STRING "the Debian package's Maintainer field")
set(CPACK_PACKAGE_CONTACT "${SWEEPD_PACKAGE_MAINTAINER}")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries' packages come from dpkg-shlibdeps; systemd provides systemd-sysusers (postinst)
# and runs the units.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/postinst ${PROJECT_SOURCE_DIR}/packaging/debian/prerm
    ${PROJECT_SOURCE_DIR}/packaging/debian/postrm ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# Only sweepd's own files: the tests' and benchmarks' targets install nothing.
set(CPACK_INSTALL_CMAKE_PROJECTS "${CMAKE_BINARY_DIR};sweepd;ALL;/")
include(CPack)
