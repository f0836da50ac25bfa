// Preloaded into every process of a sanitizer test run (tests/sanitizers/meson.build): makes
// dlclose keep the library loaded. Open MPI, PMIx and hwloc dlclose their plugins when MPI ends,
// before LeakSanitizer looks at the heap at exit; the plugins' allocations then show as leaks (their
// globals are gone) whose stacks start in unmapped code, which no suppression can name. Kept
// loaded, what a plugin still holds is reachable and the rest is named by its library.
extern "C" int dlclose(void*) { return 0; }
