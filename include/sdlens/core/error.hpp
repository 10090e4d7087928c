#pragma once
// Two kinds of failure, because callers treat them differently: bad input is the user's to fix
// (a corrupt file, a wrong shape, an unknown option; the CLI exits with 2), a computation error
// is ours or the numerics' (a solver that did not converge; the CLI exits with 1).
#include <stdexcept>
#include <string>

namespace sdlens {

class input_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class computation_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// "path: what is wrong", the one-line form every input error takes.
[[noreturn]] inline void fail_input(const std::string& source, const std::string& problem)
{
    throw input_error(source + ": " + problem);
}

}  // namespace sdlens
