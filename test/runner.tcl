# runner.tcl — runs the whole test suite and totals it: every Tcl script
# test/*.test (on SQLite's testfixture) and every C test program, each in a
# child process of its own (so that a crash or a hang in one is counted as
# a failure and the rest still run), several at a time.
#
#   tclsh test/runner.tcl ?-v? ?-j N? ?PATTERN ...?
#
# PATTERNs select tests by name, with or without extension ("version",
# "store*", "dtype_test").  -v prints every child's output, not only that
# of the failures (and runs the scripts with --verbose=1: a line for each
# test).  "make check" runs this with the environment below; make check
# T='store*' passes patterns.
#
#   NUMPACK_SRCDIR     top of the source tree (test scripts are found here)
#   NUMPACK_BUILDDIR   top of the build tree (programs, temporary files)
#   NUMPACK_CTESTS     C test programs, relative to the build tree; each
#                      ends with a "N passed, N failed" line (default: the
#                      executables test/*_test)
#   NUMPACK_CPROGS     other programs; each one is one test that passes
#                      when it exits with status 0 (default: the
#                      executables examples/*)
#   NUMPACK_SO         the module, passed on to the Tcl scripts (default
#                      .libs/numpack.so)
#   NUMPACK_TESTFIXTURE_DIR  SQLite's testfixture and its test/ directory,
#                      as test/testfixture.sh prints it: the Tcl scripts
#                      run on it (see test/prelude.tcl)
#   NUMPACK_TCLSH      the tclsh for the scripts' child processes (default:
#                      the one running this)
#   NUMPACK_PRELOAD    a sanitizer runtime to preload into testfixture
#   NUMPACK_TEST_JOBS  how many children at once (default: CPU count)
#   NUMPACK_TEST_TIMEOUT  seconds before a child is killed (default 300)
#
# Each child runs in its own empty directory, testtmp/NAME under the build
# tree (also its TMPDIR and NUMPACK_TESTTMP), which is removed when it
# passes and kept when it fails.  The last line printed is "N passed, N
# failed": the test cases of all children (for a script, every do_test and
# do_*_test it ran, plus one failure for memory it left allocated), plus
# one failure for each child that crashed, hung, exited non-zero without
# reporting a failure, or never printed its counts.  The exit status is 1
# if that line shows any failure.

package require Tcl 8.6

proc env_or {name default} {
  if {[info exists ::env($name)] && $::env($name) ne ""} {
    return $::env($name)
  }
  return $default
}

set srcdir   [file normalize [env_or NUMPACK_SRCDIR \
    [file dirname [file dirname [file normalize [info script]]]]]]
set builddir [file normalize [env_or NUMPACK_BUILDDIR [pwd]]]
set tmproot  [file join $builddir testtmp]
set timeout  [env_or NUMPACK_TEST_TIMEOUT 300]
set preload  [env_or NUMPACK_PRELOAD ""]
set verbose  0
set jobs     [env_or NUMPACK_TEST_JOBS ""]
if {$jobs eq "" && [catch {exec getconf _NPROCESSORS_ONLN} jobs]} {
  set jobs 1
}

# Run by hand ("tclsh test/runner.tcl" at the top of the build tree), find
# what make would have named.
if {![info exists ::env(NUMPACK_SO)]} {
  set ::env(NUMPACK_SO) [file join $builddir .libs numpack.so]
}
# The scripts run on testfixture; their child processes on this tclsh.
if {![info exists ::env(NUMPACK_TCLSH)]} {
  set ::env(NUMPACK_TCLSH) [info nameofexecutable]
}
foreach {var pattern} {NUMPACK_CTESTS test/*_test NUMPACK_CPROGS examples/*} {
  if {[info exists ::env($var)]} continue
  set found {}
  foreach f [lsort [glob -nocomplain -directory $builddir $pattern]] {
    if {[file isfile $f] && [file executable $f]} {
      lappend found [string range $f [string length $builddir/] end]
    }
  }
  set ::env($var) $found
}

set patterns {}
for {set i 0} {$i < [llength $argv]} {incr i} {
  set a [lindex $argv $i]
  switch -- $a {
    -v { set verbose 1 }
    -j { incr i; set jobs [lindex $argv $i] }
    default { lappend patterns $a }
  }
}
if {![string is integer -strict $jobs] || $jobs < 1} { set jobs 1 }

proc selected {name} {
  if {[llength $::patterns] == 0} { return 1 }
  foreach p $::patterns {
    if {[string match $p $name] || [string match $p [file rootname $name]]} {
      return 1
    }
  }
  return 0
}

# ---- the list of children -------------------------------------------------

# Each job: name, kind (ctest, cprog or fixture), command line.
set joblist {}

# Line-buffer the C programs' stdout when stdbuf can (it works by
# preloading, which the sanitizer runtime forbids), so that the lines
# printed before a crash are not lost in the stdio buffer.
set linebuf {}
if {$preload eq "" && [auto_execok stdbuf] ne ""} {
  set linebuf [list {*}[auto_execok stdbuf] -oL]
}

# Each child leads a process group of its own when setsid(1) is there, so
# that a timeout kills whatever it forked as well; a forked grandchild would
# otherwise keep the output pipe open and the runner waiting.
set session {}
if {[auto_execok setsid] ne ""} {
  set session [list {*}[auto_execok setsid] -w]
}

foreach {var kind} {NUMPACK_CTESTS ctest NUMPACK_CPROGS cprog} {
  foreach prog [env_or $var ""] {
    set name [file tail $prog]
    if {![selected $name]} continue
    set path [file join $builddir $prog]
    lappend joblist [list $name $kind [list {*}$session {*}$linebuf $path]]
  }
}
# The Tcl scripts run on SQLite's own testfixture, with its tester.tcl (see
# test/prelude.tcl), from the directory test/testfixture.sh makes
# (NUMPACK_TESTFIXTURE_DIR).  test/fixture/*.test are older scripts that
# source tester.tcl themselves.  A script that is not a tester.tcl script
# (crash.test) prints "N passed, N failed" itself.
set fixture [env_or NUMPACK_TESTFIXTURE_DIR ""]
set fixture_args [list --verbose=[expr {$verbose ? 1 : 0}]]
foreach {sub prefix} {{} {} fixture fixture/} {
  foreach script [lsort [glob -nocomplain -directory \
                             [file join $srcdir test {*}$sub] *.test]] {
    set name $prefix[file tail $script]
    if {![selected $name] && ![selected [file tail $script]]} continue
    lappend joblist [list $name fixture [list {*}$session \
        [file join $fixture testfixture] $script {*}$fixture_args]]
  }
}

if {[llength $joblist] == 0} {
  puts "no tests selected"
  puts "0 passed, 1 failed"
  exit 1
}

# ---- running them ---------------------------------------------------------

set total_pass 0
set total_fail 0
set failed_names {}
set next 0          ;# index in joblist of the next job to start
set running 0
set finished 0

proc start_next {} {
  global joblist next running
  while {$running < $::jobs && $next < [llength $joblist]} {
    start_job $next
    incr next
  }
}

proc start_job {i} {
  global job
  lassign [lindex $::joblist $i] name kind cmd
  set dir [file join $::tmproot $name]
  file delete -force $dir
  file mkdir $dir
  set job($i,dir) $dir
  set job($i,out) {}
  set job($i,start) [clock milliseconds]
  set job($i,timedout) 0

  set exe [lindex $cmd end]
  if {$kind eq "fixture"} {
    set exe [lindex $cmd [llength $::session]]
    if {$::fixture eq "" || ![file executable $exe]} {
      finish_job $i "no testfixture: NUMPACK_TESTFIXTURE_DIR must name the\
          directory test/testfixture.sh prints"
      return
    }
  } elseif {![file executable $exe]} {
    finish_job $i "not built: $exe"
    return
  }

  # The child's environment and working directory are the runner's at the
  # moment of the open, so set them just for it.  (Only the variables
  # changed are restored: rebuilding the whole env array confuses Tcl 8.6,
  # whose later children then miss updates.)
  # TMPDIR too, so that whatever a test makes with mkdtemp() is removed
  # with its directory, or kept with it for a look when the test fails.
  set childenv [list NUMPACK_TESTTMP $dir TMPDIR $dir]
  if {$::preload ne ""} {
    # A sanitizer build: undefined behaviour fails the test, as memory
    # errors do, instead of printing a line nobody reads.
    lappend childenv UBSAN_OPTIONS \
        [string trim "[env_or UBSAN_OPTIONS {}]:halt_on_error=1:print_stacktrace=1" :]
  }
  if {$kind eq "fixture" && $::preload ne ""} {
    # testfixture's Tcl is not built to be leak-free.
    lappend childenv LD_PRELOAD $::preload ASAN_OPTIONS \
        [string trim "[env_or ASAN_OPTIONS {}]:detect_leaks=0" :]
  }
  set saved {}
  foreach {var value} $childenv {
    if {[info exists ::env($var)]} {
      lappend saved $var [list $::env($var)]
    } else {
      lappend saved $var {}
    }
    set ::env($var) $value
  }
  set here [pwd]
  cd $dir
  set rc [catch {open |[list {*}$cmd 2>@1] r} chan]
  cd $here
  foreach {var old} $saved {
    if {[llength $old]} {
      set ::env($var) [lindex $old 0]
    } else {
      unset ::env($var)
    }
  }

  if {$rc} {
    finish_job $i "cannot start: $chan"
    return
  }
  incr ::running
  set job($i,chan) $chan
  fconfigure $chan -blocking 0 -buffering line
  fileevent $chan readable [list job_readable $i]
  set job($i,timer) [after [expr {$::timeout * 1000}] [list job_timeout $i]]
}

proc job_readable {i} {
  global job
  set chan $job($i,chan)
  while {[gets $chan line] >= 0} {
    lappend job($i,out) $line
  }
  if {[eof $chan]} {
    after cancel $job($i,timer)
    # Blocking again, so that close waits for the child and reports how
    # it ended.
    fconfigure $chan -blocking 1
    set how ""
    if {[catch {close $chan} msg opts]} {
      set ec [dict get $opts -errorcode]
      switch -- [lindex $ec 0] {
        CHILDSTATUS { set how "exit status [lindex $ec 2]" }
        CHILDKILLED { set how "killed by [lindex $ec 2]" }
        default     { set how $msg }
      }
    }
    if {$job($i,timedout)} {
      set how "timed out after $::timeout s"
    }
    incr ::running -1
    finish_job $i $how
    start_next
  }
}

proc job_timeout {i} {
  global job
  set job($i,timedout) 1
  foreach p [pid $job($i,chan)] {
    catch {exec kill -KILL -- -$p}    ;# its process group
    catch {exec kill -KILL $p}
  }
  # If something outside the group still holds the pipe, give up on it.
  set job($i,timer) [after 5000 [list job_abandon $i]]
}

proc job_abandon {i} {
  global job
  fileevent $job($i,chan) readable {}
  catch {close $job($i,chan)}     ;# non-blocking: does not wait
  incr ::running -1
  finish_job $i "timed out after $::timeout s"
  start_next
}

# Record the outcome of job I.  HOW is empty for a normal exit with status
# 0, otherwise how the child ended (or why it never ran).
proc finish_job {i how} {
  global job
  lassign [lindex $::joblist $i] name kind cmd
  set npass 0
  set nfail 0
  set notes {}
  set counted 0
  set nlisted 0
  set nafter 0
  foreach line $job($i,out) {
    if {[regexp {^(\d+) passed, (\d+) failed$} $line -> p f]} {
      set npass $p
      set nfail $f
      set counted 1
    }
    # SQLite's tester.tcl ends with "N errors out of M tests ...", where M
    # counts one more than the tests run, and lists the failed tests on
    # "!Failures on these tests: ...".  Files left open and memory left
    # allocated are reported after that line: one failure each.
    if {$kind eq "fixture"} {
      if {[regexp {^(\d+) errors out of (\d+) tests} $line -> e t]} {
        set nerr $e
        set ntests [expr {$t - 1}]
      } elseif {[regexp {^!Failures on these tests:(.*)$} $line -> l]} {
        set nlisted [llength $l]
      } elseif {[string match "Unfreed memory:*" $line] ||
                [string match "* files were left open" $line]} {
        lappend notes $line
        incr nafter
      }
    }
  }
  if {[info exists nerr]} {
    set npass [expr {$ntests - $nlisted}]
    set nfail [expr {$nerr + $nafter}]
    set counted 1
  }
  if {!$counted && $kind eq "cprog"} {
    # A program without counts is one test: did it succeed?
    if {$how eq ""} { set npass 1 } else { set nfail 1 }
    set counted 1
  }
  if {$how ne ""} { lappend notes $how }
  if {!$counted} {
    if {![string match "not built*" $how] && ![string match "cannot start*" $how]} {
      lappend notes "no result line"
    }
    incr nfail
  } elseif {$how ne "" && $nfail == 0} {
    incr nfail
  }
  if {$how ne "" && [file exists [file join $job($i,dir) .current]]} {
    set f [open [file join $job($i,dir) .current]]
    set cur [string trim [read $f]]
    close $f
    if {$cur ne ""} { lappend notes "last test started: $cur" }
  }

  set secs [expr {([clock milliseconds] - $job($i,start)) / 1000.0}]
  set line [format "%-28s %5d passed, %d failed  %5.1fs" \
                $name $npass $nfail $secs]
  if {[llength $notes]} { append line "  ([join $notes {; }])" }
  puts $line
  if {$nfail || $::verbose} {
    set out $job($i,out)
    set max 400
    if {[llength $out] > $max} {
      puts "    ... [expr {[llength $out] - $max}] earlier lines omitted"
      set out [lrange $out end-[expr {$max - 1}] end]
    }
    foreach l $out { puts "    $l" }
  }
  if {$nfail} {
    lappend ::failed_names $name
    puts "    (files kept in $job($i,dir))"
  } else {
    file delete -force $job($i,dir)
  }
  incr ::total_pass $npass
  incr ::total_fail $nfail
  incr ::finished
  if {$::finished == [llength $::joblist]} {
    set ::alldone 1
  }
}

fconfigure stdout -buffering line
start_next
if {$finished < [llength $joblist]} {
  vwait ::alldone
}

if {[llength $failed_names]} {
  puts "failed: [join $failed_names { }]"
} else {
  catch {file delete $tmproot}   ;# only if empty
}
puts "$total_pass passed, $total_fail failed"
exit [expr {$total_fail ? 1 : 0}]
