// Runtime options of the sanitizer build (cmake/sanitize.cmake links this into every target), read
// by the sanitizers' runtimes at start-up; an environment variable of the same name still overrides
// them for one run (e.g. ASAN_OPTIONS=detect_leaks=0).
extern "C" {

// AddressSanitizer: stop at the first error (a test that goes on after memory corruption proves
// nothing); check the order of static initialisers across our translation units.
const char* __asan_default_options() {
  return "abort_on_error=0:halt_on_error=1:check_initialization_order=1:strict_init_order=1:"
         "detect_leaks=1:print_suppressions=0";
}

// UndefinedBehaviorSanitizer: a report with the stack that led to it; -fno-sanitize-recover already
// makes it fatal.
const char* __ubsan_default_options() {
  return "print_stacktrace=1:halt_on_error=1";
}

// LeakSanitizer: only our leaks. Memory that libraries we do not build keep until exit (libtorch's
// operator registry and thread pools, OpenMP's, the dynamic loader's) is not a leak of ours.
const char* __lsan_default_suppressions() {
  return "leak:libtorch_cpu.so\n"
         "leak:libc10.so\n"
         "leak:libgomp.so\n"
         "leak:libopenblas\n"
         "leak:libdnnl\n"
         "leak:libprotobuf.so\n"
         "leak:ld-linux-x86-64.so\n";
}

}  // extern "C"
