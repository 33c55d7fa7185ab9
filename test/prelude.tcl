# prelude.tcl — how every Tcl test script (test/*.test) starts: SQLite's own
# test harness, tester.tcl from the testfixture directory that
# test/testfixture.sh makes, with the numpack module loaded into its "db"
# and the few helpers of our own below.  A script is run by testfixture
# (test/runner.tcl does it) and begins with
#
#   source [file join [file dirname [info script]] prelude.tcl]
#
# then uses SQLite's verbs (do_test, do_execsql_test, do_catchsql_test,
# do_eqp_test, do_faultsim_test, ...) and ends with finish_test, which
# reports "N errors out of M tests" and fails on memory left allocated
# through SQLite.
#
# Defined here, besides SQLite's tester.tcl:
#
#   db             open on test.db in the working directory, numpack loaded
#   tmpdir         the script's own directory, also the working directory
#   ::npk::testdir the directory of our test scripts (testdir is SQLite's)
#   ::npk::so      the module; ::npk::test_so its build with test hooks
#   ::npk::tclsh   a plain tclsh with the sqlite3 package, for children
#   load_numpack ?DB?          load the module into connection DB
#   reset_db ?DB? ?FILE?       close DB, delete FILE, reopen it, load numpack
#   numpack_expected_version   the version configure was given
#
# Environment (test/runner.tcl sets it; the defaults suit a run by hand
# from the top of the build tree, "testfixture ../src/test/x.test"):
#
#   NUMPACK_TESTFIXTURE_DIR  testfixture's directory (default: the one of
#                    the running testfixture), holding SQLite's test/
#   NUMPACK_SO       the module (default ./.libs/numpack.so)
#   NUMPACK_TEST_SO  the module with test hooks (default test/.libs/...)
#   NUMPACK_TCLSH    the tclsh for child processes (default: tclsh on PATH)
#   NUMPACK_TESTTMP  the working directory (default ./testtmp/NAME)
#   NUMPACK_VERSION  the configured version (default: the file VERSION)

package require Tcl 8.6

# A crash must not swallow what was already printed.
fconfigure stdout -buffering line

# testfixture does not run Tcl's init.tcl as tclsh does: without it there
# is no min() or max(), no "clock format", no auto_execok.
if {![info exists ::tcl_library]} {
  set ::tcl_library [::tcl::pkgconfig get scriptdir,runtime]
  source [file join $::tcl_library init.tcl]
}

namespace eval ::npk {
  variable testdir [file dirname [file normalize [info script]]]
  variable curfile {}
}

if {[info commands sqlite3_memdebug_settitle] eq ""} {
  puts stderr "[file tail $argv0]: run it with SQLite's testfixture\
      (test/testfixture.sh builds it), not tclsh"
  exit 1
}

proc ::npk::env_or {name default} {
  if {[info exists ::env($name)] && $::env($name) ne ""} {
    return $::env($name)
  }
  return $default
}

# Paths first: tester.tcl is sourced from the working directory below.
if {[info exists ::env(NUMPACK_SO)] && $::env(NUMPACK_SO) ne ""} {
  set ::npk::so [file normalize $::env(NUMPACK_SO)]
} elseif {[file exists .libs/numpack.so]} {
  set ::npk::so [file normalize .libs/numpack.so]
} else {
  puts stderr "numpack.so not found: set NUMPACK_SO or run from the build tree"
  exit 1
}
# The test build of the module (make check builds it as
# test/.libs/numpack.so), for children that arm its fault or crash hooks
# through the environment: the installed module has none.
set ::npk::test_so [file normalize [::npk::env_or NUMPACK_TEST_SO \
    [file join [file dirname $::npk::so] .. test .libs numpack.so]]]
# A plain tclsh with the sqlite3 package, for child processes (the runner's
# own): testfixture is no tclsh for them (no init.tcl, and output not
# ended by a newline is lost at exit).
set ::npk::tclsh [::npk::env_or NUMPACK_TCLSH [auto_execok tclsh]]
set ::npk::fixturedir [file normalize [::npk::env_or NUMPACK_TESTFIXTURE_DIR \
    [file dirname [info nameofexecutable]]]]

set tmpdir [::npk::env_or NUMPACK_TESTTMP ""]
if {$tmpdir eq ""} {
  set tmpdir [file join testtmp [file rootname [file tail $argv0]]]
  file delete -force -- $tmpdir
}
set tmpdir [file normalize $tmpdir]
file mkdir $tmpdir
cd $tmpdir
set ::npk::curfile [file join $tmpdir .current]

# SQLite's harness, run in this directory (not a "testdir" below it) and
# quiet about passing tests unless asked (--verbose=1).
set testdir [file join $::npk::fixturedir test]
if {![file exists [file join $testdir tester.tcl]]} {
  puts stderr "no $testdir/tester.tcl: set NUMPACK_TESTFIXTURE_DIR to the\
      directory test/testfixture.sh prints"
  exit 1
}
if {![string match *--verbose=* $argv]} { lappend argv --verbose=0 }
lappend argv --testdir=
source [file join $testdir tester.tcl]

# Floating-point values print as Tcl prints them by default, the shortest
# form that reads back exactly (tester.tcl sets 15 digits): the tests
# check float32 and float64 values to the last bit.
set tcl_precision 0

# ---- our helpers --------------------------------------------------------

# Load the module into connection DB.
proc load_numpack {{db db}} {
  $db enable_load_extension 1
  $db eval { SELECT load_extension($::npk::so) }
  $db enable_load_extension 0
}

# SQLite's reset_db, with the module loaded, and for any connection and
# file: close DB, delete FILE and its journals, reopen it.
proc reset_db {{db db} {file test.db}} {
  catch {$db close}
  forcedelete $file $file-journal $file-wal $file-shm
  sqlite3 $db $file
  if {$db eq "db"} { set ::DB [sqlite3_connection_pointer db] }
  load_numpack $db
}

# 1 when store DIR has a journal that may be hot: anything at the journal's
# name but its idle file, kept between commits with its magic zeroed (a
# regular file that does not start with a magic, "NPKJRNL1" or "NPKJRNL2").
proc journal_hot {dir} {
  set f [file join $dir metadata.npkm-journal]
  if {[catch {file lstat $f st}]} { return 0 }
  if {$st(type) ne "file"} { return 1 }
  set ch [open $f rb]
  set m [read $ch 8]
  close $ch
  expr {$m in {NPKJRNL1 NPKJRNL2}}
}

# The version configure was given (from the file VERSION), for tests that
# check it.
proc numpack_expected_version {} {
  set v [::npk::env_or NUMPACK_VERSION ""]
  if {$v ne ""} { return $v }
  set f [open [file join $::npk::testdir .. VERSION]]
  set v [string trim [read $f]]
  close $f
  return $v
}

# Each test's name goes to .current before it runs, so that the runner can
# say which test a crash or a hang interrupted.
rename do_test ::npk::sqlite_do_test
proc do_test {name cmd expected} {
  catch {
    set f [open $::npk::curfile w]
    puts $f $name
    close $f
  }
  uplevel 1 [list ::npk::sqlite_do_test $name $cmd $expected]
}

load_numpack db
