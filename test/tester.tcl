# tester.tcl — the verbs of the Tcl test scripts (test/*.test), in the
# manner of SQLite's own test/tester.tcl, for a plain tclsh with the sqlite3
# package.  A script does
#
#   source [file join [file dirname [info script]] tester.tcl]
#   do_execsql_test name-1.1 { SELECT 1+1 } {2}
#   ...
#   finish_test
#
# and gets, on sourcing this file:
#
#   db        an open connection to a fresh test.db, numpack loaded
#   testdir   the directory holding the test scripts (the source tree)
#   tmpdir    a directory of its own for files, also the working directory
#
# Environment (set by test/runner.tcl; defaults for running a script by
# hand from the top of the build tree, "tclsh ../src/test/x.test"):
#
#   NUMPACK_SO       the module to load (default ./.libs/numpack.so)
#   NUMPACK_TESTTMP  the script's own directory (default ./testtmp/NAME)
#   NUMPACK_VERSION  the configured version (default: from configure.ac)
#
# Passing tests print nothing.  A failing one prints "FAIL name" with what
# was expected and what came back.  finish_test prints "N passed, N failed"
# (the line the runner reads) and exits non-zero if anything failed.

package require Tcl 8.6
package require sqlite3

# A crash must not swallow what was already printed.
fconfigure stdout -buffering line

set testdir [file dirname [file normalize [info script]]]

namespace eval ::npk {
  variable npass 0        ;# tests passed
  variable nfail 0        ;# tests failed
  variable failed {}      ;# names of the failed tests
  variable curfile {}     ;# records the running test, for crash reports
  variable so {}          ;# path of the module
}

# ---- locating things ------------------------------------------------------

proc ::npk::find_module {} {
  if {[info exists ::env(NUMPACK_SO)] && $::env(NUMPACK_SO) ne ""} {
    return [file normalize $::env(NUMPACK_SO)]
  }
  foreach f {.libs/numpack.so numpack.so} {
    if {[file exists $f]} { return [file normalize $f] }
  }
  error "numpack.so not found: set NUMPACK_SO or run from the build tree"
}

# The version configure was given, for tests that check it.
proc numpack_expected_version {} {
  if {[info exists ::env(NUMPACK_VERSION)] && $::env(NUMPACK_VERSION) ne ""} {
    return $::env(NUMPACK_VERSION)
  }
  set f [open [file join $::testdir .. configure.ac]]
  set text [read $f]
  close $f
  if {![regexp {AC_INIT\(\[[^]]*\],\s*\[([^]]*)\]} $text -> v]} {
    error "cannot find the version in configure.ac"
  }
  return $v
}

# ---- files ----------------------------------------------------------------

# Delete files or directories, ignoring the ones that do not exist.
proc forcedelete {args} {
  foreach f $args {
    file delete -force -- $f
  }
}

# ---- connections ----------------------------------------------------------

# Load the extension into connection DB.
proc load_numpack {{db db}} {
  $db enable_load_extension 1
  $db eval { SELECT load_extension($::npk::so) }
  $db enable_load_extension 0
}

# Close DB (default "db"), delete FILE and its journals, reopen it with the
# extension loaded.
proc reset_db {{db db} {file test.db}} {
  catch {$db close}
  forcedelete $file $file-journal $file-wal $file-shm
  sqlite3 $db $file
  load_numpack $db
}

# Run SQL on DB; the result is the flat list of every value of every row
# (NULL as an empty string), as in SQLite's tester.
proc execsql {sql {db db}} {
  uplevel #0 [list $db eval $sql]
}

# Like execsql, but returns {0 RESULT} or {1 ERRORMESSAGE}.
proc catchsql {sql {db db}} {
  set rc [catch {uplevel #0 [list $db eval $sql]} res]
  return [list [expr {$rc ? 1 : 0}] $res]
}

# ---- tests ----------------------------------------------------------------

proc ::npk::note_running {name} {
  variable curfile
  if {$curfile eq ""} return
  catch {
    set f [open $curfile w]
    puts $f $name
    close $f
  }
}

# Evaluate SCRIPT at global level and compare its result with EXPECTED.
# EXPECTED is compared as a string, or as a regular expression when written
# /like this/.  An error in SCRIPT fails the test ("Error: message").
proc do_test {name script expected} {
  ::npk::note_running $name
  if {[catch {uplevel #0 $script} result]} {
    set result "Error: $result"
  }
  if {[regexp {^/(.*)/$} $expected -> re]} {
    set ok [regexp -- $re $result]
  } else {
    set ok [expr {$result eq $expected}]
  }
  if {$ok} {
    incr ::npk::npass
  } else {
    incr ::npk::nfail
    lappend ::npk::failed $name
    puts "FAIL $name"
    puts "  expected: \[$expected\]"
    puts "  got:      \[$result\]"
  }
}

# Run SQL on db; EXPECTED is the flat list of result values.
proc do_execsql_test {name sql expected} {
  uplevel 1 [list do_test $name [list execsql $sql] [list {*}$expected]]
}

# Run SQL on db expecting {0 RESULT} or {1 ERRORMESSAGE}.
proc do_catchsql_test {name sql expected} {
  uplevel 1 [list do_test $name [list catchsql $sql] [list {*}$expected]]
}

# Print the counts the runner reads and exit.
proc finish_test {} {
  catch {db close}
  ::npk::note_running ""
  if {$::npk::nfail} {
    puts "failed: $::npk::failed"
  }
  puts "$::npk::npass passed, $::npk::nfail failed"
  exit [expr {$::npk::nfail ? 1 : 0}]
}

# ---- setting up ---------------------------------------------------------

set ::npk::so [::npk::find_module]

# The test build of the module (make check builds it as
# test/.libs/numpack.so), for children that arm its fault or crash hooks
# through the environment: the installed module has none.
if {[info exists env(NUMPACK_TEST_SO)] && $env(NUMPACK_TEST_SO) ne ""} {
  set ::npk::test_so [file normalize $env(NUMPACK_TEST_SO)]
} else {
  set ::npk::test_so [file normalize [file join [file dirname $::npk::so] .. \
                                          test .libs numpack.so]]
}

if {[info exists env(NUMPACK_TESTTMP)] && $env(NUMPACK_TESTTMP) ne ""} {
  set tmpdir [file normalize $env(NUMPACK_TESTTMP)]
} else {
  set tmpdir [file normalize [file join testtmp \
      [file rootname [file tail $argv0]]]]
  forcedelete $tmpdir
}
file mkdir $tmpdir
cd $tmpdir
set ::npk::curfile [file join $tmpdir .current]

reset_db
