// Checked calls and error reporting.
//
// Every failure in curaclip becomes a curaclip::Error carrying the failing
// expression (or call), the file and the line. Callers near main() turn it into
// a message and a non-zero exit (and, under MPI, an abort of all ranks), so a
// bad input never turns into a crash or a hang.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace curaclip {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] inline void fail_at(const char* file, int line, const std::string& what) {
    std::ostringstream os;
    os << what << " (" << file << ":" << line << ")";
    throw Error(os.str());
}

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    return os.str();
}
}  // namespace detail

}  // namespace curaclip

// CC_CHECK(cond, msg...): throw an Error naming the condition, file and line.
#define CC_CHECK(cond, ...)                                                              \
    do {                                                                                 \
        if (!(cond))                                                                     \
            ::curaclip::fail_at(__FILE__, __LINE__,                                      \
                                ::curaclip::detail::concat("check failed: " #cond " ",   \
                                                           ##__VA_ARGS__));              \
    } while (0)

// CC_REQUIRE(cond, msg...): a USER's mistake (a missing or corrupt file, a bad
// option value, a wrong shape): throws an Error whose text is the message alone,
// which must say what was wrong and what was expected, naming the file, option or
// row. The expression and source line are for internal invariants (CC_CHECK), not
// for users.
#define CC_REQUIRE(cond, ...)                                                             \
    do {                                                                                  \
        if (!(cond)) throw ::curaclip::Error(::curaclip::detail::concat(__VA_ARGS__));    \
    } while (0)

// CC_USER_FAIL(msg...): unconditional user-facing error (as CC_REQUIRE).
#define CC_USER_FAIL(...) throw ::curaclip::Error(::curaclip::detail::concat(__VA_ARGS__))

// CC_FAIL(msg...): unconditional error with file and line.
#define CC_FAIL(...) ::curaclip::fail_at(__FILE__, __LINE__, ::curaclip::detail::concat(__VA_ARGS__))
