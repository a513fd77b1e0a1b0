#include "io/checkpoint.h"


#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
constexpr int64_t kFormatVersion = 1;

std::vector<int64_t> h5_shape(const Shape& s) {
    if (s.ndim == 1 && s[0] == 1) return {};  // [1] device scalars are 0-d in the file, as in torch
    return std::vector<int64_t>(s.d.begin(), s.d.begin() + s.ndim);
}

void write_tensor(H5File& f, const std::string& name, Backend& be, Tensor t, const Shape& shape) {
    std::vector<float> host(size_t(t.numel()));
    be.download(host.data(), t);
    f.write_f32(name, host.data(), h5_shape(shape));
}

void read_tensor(const H5File& f, const std::string& name, Backend& be, Tensor t, const Shape& shape) {
    std::vector<int64_t> dims;
    const std::vector<float> host = f.read_f32(name, &dims);
    CC_CHECK(dims == h5_shape(shape), f.path(), ": '", name, "' has shape ", Shape::from(dims).str(),
             ", the model expects ", shape.str());
    be.upload(t, host.data());
}
}  // namespace

std::string checkpoint_name(int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step_%08lld.h5", (long long)step);
    return buf;
}

void save_checkpoint(const std::string& dir, const std::string& name, ParameterSet& params,
                     const CheckpointState& state) {
    const std::string target = (fs::path(dir) / name).string();
    const std::string tmp = target + ".tmp";
    fs::remove(tmp);  // a leftover from a crash mid-write is garbage by construction
    {
        H5File f(tmp, H5File::Mode::create_exclusive);
        Backend& be = params.backend();
        for (auto& p : params.all()) {
            write_tensor(f, "params/" + p.name, be, p.value, p.shape);
            write_tensor(f, "optimizer/adam_m/" + p.name, be, p.adam_m, p.shape);
            write_tensor(f, "optimizer/adam_v/" + p.name, be, p.adam_v, p.shape);
        }
        f.set_attr("/", "format_version", kFormatVersion);
        f.set_attr("/", "step", state.step);
        f.set_attr("/", "loader_epoch", state.loader_epoch);
        f.set_attr("/", "loader_step", state.loader_step);
        f.set_attr("/", "seed", int64_t(state.seed));
        f.set_attr("/", "config", state.config);
        f.set_attr("/", "model_config", state.model_config);
        f.flush();
    }
    io::replace_durably(tmp, target);
    const std::string latest = (fs::path(dir) / "latest").string();
    {
        std::ofstream out(latest + ".tmp", std::ios::trunc);
        out << name << "\n";
        CC_CHECK(out.good(), "cannot write ", latest, ".tmp");
    }
    io::replace_durably(latest + ".tmp", latest);
}

CheckpointState load_checkpoint(const std::string& path, ParameterSet& params, bool with_optimizer) {
    H5File f(path, H5File::Mode::read);
    const int64_t version = f.attr_i64("/", "format_version");
    CC_CHECK(version == kFormatVersion, path, ": checkpoint format version ", version, ", this build reads ",
             kFormatVersion);
    Backend& be = params.backend();
    for (auto& p : params.all()) {
        CC_CHECK(f.exists("params/" + p.name), path, ": no parameter '", p.name,
                 "' (checkpoint of another model shape?)");
        read_tensor(f, "params/" + p.name, be, p.value, p.shape);
        if (with_optimizer) {
            read_tensor(f, "optimizer/adam_m/" + p.name, be, p.adam_m, p.shape);
            read_tensor(f, "optimizer/adam_v/" + p.name, be, p.adam_v, p.shape);
        }
    }
    CheckpointState s;
    s.step = f.attr_i64("/", "step");
    s.loader_epoch = f.attr_i64("/", "loader_epoch");
    s.loader_step = f.attr_i64("/", "loader_step");
    s.seed = uint64_t(f.attr_i64("/", "seed"));
    s.config = f.attr_string("/", "config");
    s.model_config = f.attr_string("/", "model_config");
    return s;
}

ModelConfig checkpoint_model_config(const std::string& path) {
    const H5File f(path, H5File::Mode::read);
    CC_CHECK(f.has_attr("/", "model_config"), path, ": no model_config attribute (not a curaclip checkpoint?)");
    return model_config_from_ini(f.attr_string("/", "model_config"), path);
}

std::string resolve_checkpoint(const std::string& run_dir, const std::string& which) {
    if (which != "latest") {
        CC_CHECK(fs::exists(which), "checkpoint not found: ", which);
        return which;
    }
    const fs::path pointer = fs::path(run_dir) / "latest";
    std::ifstream in(pointer);
    CC_CHECK(in.good(), "--resume latest: no checkpoint pointer ", pointer.string(), " (nothing to resume)");
    std::string name;
    std::getline(in, name);
    CC_CHECK(!name.empty(), pointer.string(), " is empty");
    const fs::path file = fs::path(run_dir) / name;
    CC_CHECK(fs::exists(file), pointer.string(), " names ", file.string(), ", which does not exist");
    return file.string();
}

}  // namespace curaclip
