#pragma once
// Two ways to build with sdlens from one set of headers, as fmt and spdlog offer:
//
//  - Header-only (the default, target sdlens::sdlens). Every entry point that instantiates heavy
//    templates (Eigen's dense decompositions, Spectra's Arnoldi, the solvers, the forward pass) is
//    itself a template, if need be with one defaulted parameter that nothing depends on:
//        template <class = void> layer_singular_result layer_singular_triplets(const model&, ...);
//    A call looks as it would for a plain function, but its body, and everything heavy it uses,
//    is compiled only in the files that call it: including a header costs about what Eigen and
//    nlohmann/json cost, whichever header it is.
//
//  - Compiled (target sdlens::sdlens_compiled, which defines SDLENS_COMPILED). The same entry
//    points are explicitly instantiated once, in the library's src/*.cpp, and every header
//    declares them `extern template`, so no file that includes it compiles them again. The
//    declared entry points are out-of-line (not `inline`): the standard lets a compiler instantiate
//    an inline function despite an extern declaration, and g++ does when it optimizes.
//
// Each header lists its instantiations once, in a macro that takes a macro,
//     #define SDLENS_..._INSTANTIATIONS(X) X(declaration) X(declaration) ...
// expanded with SDLENS_EXTERN_TEMPLATE at the end of the header and with SDLENS_INSTANTIATE in src/.

#define SDLENS_INSTANTIATE(...) template __VA_ARGS__;

#if defined(SDLENS_COMPILED)
#define SDLENS_EXTERN_TEMPLATE(...) extern template __VA_ARGS__;
#else
#define SDLENS_EXTERN_TEMPLATE(...)
#endif
