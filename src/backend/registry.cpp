#include "backend/registry.h"

#include "core/check.h"
#include "cpu/cpu_backend.h"

namespace curaclip {

namespace {
std::vector<BackendFactory>& factories() {
    // The CPU backends are always there and listed first.
    static std::vector<BackendFactory> list = {
        {"cpu", [] { return std::string(); }, [] { return make_cpu_backend(DType::f32); }},
        {"cpu-f64", [] { return std::string(); }, [] { return make_cpu_backend(DType::f64); }},
    };
    return list;
}
}  // namespace

bool register_backend(BackendFactory factory) {
    factories().push_back(std::move(factory));
    return true;
}

const std::vector<BackendFactory>& registered_backends() { return factories(); }

std::unique_ptr<Backend> make_backend(const std::string& name) {
    std::string names;
    for (const auto& f : factories()) {
        if (f.name == name) {
            const std::string why = f.unavailable_reason();
            CC_CHECK(why.empty(), "backend '", name, "' cannot run here: ", why);
            return f.create();
        }
        names += (names.empty() ? "" : ", ") + f.name;
    }
    CC_FAIL("unknown backend '", name, "' (compiled in: ", names, ")");
}

}  // namespace curaclip
