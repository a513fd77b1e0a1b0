// Checkpoints and HDF5 files under faults (issue 11): a failed write (the disk
// refuses more bytes) leaves the previous checkpoint and `latest` byte for byte and
// no temporary behind; stale temporaries of a killed write are removed; NaN/Inf
// tensors are refused at save and at load, naming the tensors; a damaged `latest`
// names the pointer and shows what it holds; a file locked by another process says
// so and names HDF5_USE_FILE_LOCKING; a shape claiming 2^40 rows is refused before
// allocating. The real full-disk run is tests/cli/test_full_disk.sh.
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "model/checkpoint.h"
#include "io/dataset_writer.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"
#include "tests/common/test_files.h"

namespace curaclip {
namespace {

using testing::expect_error;
using testing::read_file_bytes;
using testing::TempDir;
using testing::write_file_bytes;
namespace fs = std::filesystem;

// A model of `n` small parameters named p00, p01, ... (shape [3, 4]) plus
// logit_scale (a 0-d scalar in the file), with values 0.01 * (k + 1) + i.
struct Model {
    std::unique_ptr<Backend> be = make_backend("cpu");
    ParameterSet ps{*be};
    explicit Model(int n = 3) {
        for (int k = 0; k < n; ++k) ps.declare(name(k), {3, 4}, true);
        ps.declare("logit_scale", {1}, false);
        ps.finalize();
        for (size_t k = 0; k < ps.size(); ++k) {
            std::vector<float> v(size_t(ps[k].value.numel()));
            for (size_t i = 0; i < v.size(); ++i) v[i] = 0.01f * float(k + 1) + float(i);
            be->upload(ps[k].value, v.data());
            std::vector<float> m(v.size(), 0.5f), s(v.size(), 0.25f);
            be->upload(ps[k].adam_m, m.data());
            be->upload(ps[k].adam_v, s.data());
        }
    }
    static std::string name(int k) { return std::string("p") + char('0' + k / 10) + char('0' + k % 10); }
    void set(size_t k, size_t i, float x, bool moment = false) {
        Tensor t = moment ? ps[k].adam_v : ps[k].value;
        std::vector<float> v(size_t(t.numel()));
        be->download(v.data(), t);
        v[i] = x;
        be->upload(t, v.data());
    }
    std::vector<float> values(size_t k) {
        std::vector<float> v(size_t(ps[k].value.numel()));
        be->download(v.data(), ps[k].value);
        return v;
    }
};

CheckpointState state(int64_t step) { return CheckpointState{step, 0, step, 7, "[train]\n", "[model]\n", "", -1, ""}; }

// Names of the files in dir, sorted.
std::vector<std::string> listing(const std::string& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Overwrites dataset `name` of an existing HDF5 file with `v` (same size).
void overwrite_dataset(const std::string& path, const std::string& name, const std::vector<float>& v) {
    H5File f(path, H5File::Mode::read_write);
    std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
    H5Id d(H5Dopen2(f.id(), name.c_str(), H5P_DEFAULT));
    ASSERT_TRUE(d.valid()) << name;
    ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
}

// Runs f with RLIMIT_FSIZE = bytes: a write past it fails with EFBIG, as a disk
// that refuses more bytes (SIGXFSZ ignored meanwhile, as its default kills).
template <typename F>
void with_file_size_limit(rlim_t bytes, F&& f) {
    struct rlimit old {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit lim = old;
    lim.rlim_cur = bytes;
    auto* prev = std::signal(SIGXFSZ, SIG_IGN);
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
    try {
        f();
    } catch (...) {
        ::setrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, prev);
        throw;
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, prev);
}

// ---- save / load --------------------------------------------------------------------

TEST(CheckpointFaults, SaveWritesCheckpointAndPointerAndNothingElse) {
    TempDir d;
    Model m;
    save_checkpoint(d.path.string(), checkpoint_name(7), m.ps, state(7));
    EXPECT_EQ(listing(d.path.string()), (std::vector<std::string>{"latest", "step_00000007.h5"}));
    EXPECT_EQ(read_file_bytes(d / "latest"), "step_00000007.h5\n");
    EXPECT_EQ(resolve_checkpoint(d.path.string(), "latest"), d / "step_00000007.h5");
    Model back;
    for (size_t k = 0; k < back.ps.size(); ++k) back.set(k, 0, -1.0f);
    const CheckpointState s = load_checkpoint(d / "step_00000007.h5", back.ps, true);
    EXPECT_EQ(s.step, 7);
    EXPECT_EQ(s.loader_step, 7);
    EXPECT_EQ(s.seed, 7u);
    EXPECT_EQ(s.config, "[train]\n");
    for (size_t k = 0; k < m.ps.size(); ++k) EXPECT_EQ(back.values(k), m.values(k)) << m.ps[k].name;
    // A 0-d scalar in the file, as torch writes logit_scale.
    H5File f(d / "step_00000007.h5", H5File::Mode::read);
    EXPECT_EQ(f.shape("params/logit_scale"), std::vector<int64_t>{});
    EXPECT_EQ(f.read_f32("optimizer/adam_v/p01"), std::vector<float>(12, 0.25f));
}

TEST(CheckpointFaults, OneNanWeightIsRefusedAtLoadNamingTheTensorAndFile) {
    TempDir d;
    Model m;
    save_checkpoint(d.path.string(), checkpoint_name(1), m.ps, state(1));
    const std::string path = d / "step_00000001.h5";
    std::vector<float> v = m.values(1);
    v[5] = std::nanf("");
    overwrite_dataset(path, "params/p01", v);
    Model back;
    // eval, embed and init_from load parameters only; resume loads the moments too.
    for (bool with_optimizer : {false, true})
        expect_error([&] { load_checkpoint(path, back.ps, with_optimizer); },
                     {path, "non-finite values (NaN or Inf) in 1 tensor: params/p01 (1 NaN of 12 values)",
                      "refusing to use it"});
}

TEST(CheckpointFaults, NonFiniteMomentsAreRefusedWhenLoadedAndEveryTensorIsNamedUpToTen) {
    TempDir d;
    Model m(12);
    save_checkpoint(d.path.string(), checkpoint_name(2), m.ps, state(2));
    const std::string path = d / "step_00000002.h5";
    overwrite_dataset(path, "optimizer/adam_v/p03",
                      {0.25f, std::numeric_limits<float>::infinity(), 0.25f, 0.25f, 0.25f, 0.25f, 0.25f, 0.25f,
                       0.25f, 0.25f, -std::numeric_limits<float>::infinity(), std::nanf("")});
    Model back(12);
    // Parameters only (eval): the moments are not read, the parameters are finite.
    EXPECT_NO_THROW(load_checkpoint(path, back.ps, false));
    expect_error([&] { load_checkpoint(path, back.ps, true); },
                 {path, "in 1 tensor: optimizer/adam_v/p03 (1 NaN, 2 Inf of 12 values)"});
    // Twelve broken parameters: ten named, then a count.
    for (int k = 0; k < 12; ++k) overwrite_dataset(path, "params/" + Model::name(k), std::vector<float>(12, NAN));
    try {
        load_checkpoint(path, back.ps, false);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("in 12 tensors: params/p00 (12 NaN of 12 values), params/p01"), std::string::npos) << msg;
        EXPECT_NE(msg.find("params/p09 (12 NaN of 12 values), and 2 more;"), std::string::npos) << msg;
        EXPECT_EQ(msg.find("params/p10"), std::string::npos) << msg;
    }
}

TEST(CheckpointFaults, SaveRefusesNonFiniteModelAndLeavesThePreviousCheckpoint) {
    TempDir d;
    Model m;
    save_checkpoint(d.path.string(), checkpoint_name(1), m.ps, state(1));
    const std::string before = read_file_bytes(d / "step_00000001.h5");
    m.set(2, 3, INFINITY, /*moment=*/true);
    expect_error([&] { save_checkpoint(d.path.string(), checkpoint_name(2), m.ps, state(2)); },
                 {d / "step_00000002.h5", "not written", "optimizer/adam_v/p02 (1 Inf of 12 values)",
                  d / "latest" + " still names step_00000001.h5"});
    EXPECT_EQ(listing(d.path.string()), (std::vector<std::string>{"latest", "step_00000001.h5"}));
    EXPECT_EQ(read_file_bytes(d / "latest"), "step_00000001.h5\n");
    EXPECT_EQ(read_file_bytes(d / "step_00000001.h5"), before);
}

TEST(CheckpointFaults, WriteRefusedByTheFileSystemLeavesEverythingAsItWas) {
    TempDir d;
    Model m(40);  // 41 x 3 tensors: a file of well over 32 KiB
    save_checkpoint(d.path.string(), checkpoint_name(1), m.ps, state(1));
    const std::string before = read_file_bytes(d / "step_00000001.h5");
    ASSERT_GT(before.size(), size_t(32) << 10);
    m.set(0, 0, 42.0f);
    // Room for a little more than half a checkpoint: EFBIG ("File too large").
    with_file_size_limit(rlim_t(before.size() / 2), [&] {
        expect_error([&] { save_checkpoint(d.path.string(), checkpoint_name(2), m.ps, state(2)); },
                     {"checkpoint " + d / "step_00000002.h5" + " not written: cannot write " +
                          d / "step_00000002.h5.tmp",
                      "File too large", d / "latest" + " still names step_00000001.h5"});
    });
    EXPECT_EQ(listing(d.path.string()), (std::vector<std::string>{"latest", "step_00000001.h5"}));
    EXPECT_EQ(read_file_bytes(d / "latest"), "step_00000001.h5\n");
    EXPECT_EQ(read_file_bytes(d / "step_00000001.h5"), before);
    // With room again the same save succeeds.
    save_checkpoint(d.path.string(), checkpoint_name(2), m.ps, state(2));
    EXPECT_EQ(read_file_bytes(d / "latest"), "step_00000002.h5\n");
    Model back(40);
    load_checkpoint(resolve_checkpoint(d.path.string(), "latest"), back.ps, true);
    EXPECT_EQ(back.values(0)[0], 42.0f);
}

TEST(CheckpointFaults, StaleTemporariesOfAKilledWriteAreRemovedOnlyTheOwnNames) {
    TempDir d;
    for (const char* n : {"step_00000003.h5.tmp", "latest.tmp", "step_12.h5.tmp", "notes.tmp", "step_x.h5.tmp",
                          "step_00000003.h5.tmp.keep"})
        write_file_bytes(d / n, "partial");
    fs::create_directory(d / "step_00000009.h5.tmp");  // not a regular file: not ours
    Model m;
    save_checkpoint(d.path.string(), checkpoint_name(5), m.ps, state(5));
    EXPECT_EQ(listing(d.path.string()),
              (std::vector<std::string>{"latest", "notes.tmp", "step_00000003.h5.tmp.keep", "step_00000005.h5",
                                        "step_00000009.h5.tmp", "step_x.h5.tmp"}));
}

TEST(CheckpointFaults, SaveIntoAMissingFolderNamesItAndTheReason) {
    TempDir d;
    Model m;
    expect_error([&] { save_checkpoint(d / "nowhere", checkpoint_name(1), m.ps, state(1)); },
                 {"cannot create " + d / "nowhere/step_00000001.h5.tmp", "No such file or directory",
                  "there is no earlier checkpoint in " + d / "nowhere"});
}

// ---- the latest pointer ---------------------------------------------------------------

TEST(CheckpointFaults, DamagedLatestPointerIsNamedWithWhatItHolds) {
    TempDir d;
    Model m;
    save_checkpoint(d.path.string(), checkpoint_name(1), m.ps, state(1));
    const std::string dir = d.path.string(), latest = d / "latest";
    struct Case {
        std::string bytes, needle;
    };
    const std::vector<Case> cases = {
        {std::string("step_\0" "0000001.h5\n", 17), "a NUL byte at offset 5: \"step_\\00000001.h5\\n\" (17 bytes"},
        {std::string(4, '\0'), "a NUL byte at offset 0: \"\\0\\0\\0\\0\""},
        {"", "it is empty"},
        {"\n", "it holds an empty line"},
        {"step_00000001.h5\nstep_00000002.h5\n", "more than one line"},
        {"\x89PNG\r\n\x1a\n", "a control character at offset 4: \"\\x89PNG\\r\\n\\x1a\\n\""},
        {"/etc/passwd\n", "it names a path"},
        {std::string(5000, 'a'), "longer than 4096 bytes"},
    };
    for (const Case& c : cases) {
        write_file_bytes(latest, c.bytes);
        expect_error([&] { resolve_checkpoint(dir, "latest"); },
                     {"checkpoint pointer " + latest + " should hold one line naming a checkpoint file in " + dir,
                      c.needle});
    }
    // A pointer to a file that is not there; CRLF and a missing newline are fine.
    write_file_bytes(latest, "step_00000099.h5\n");
    expect_error([&] { resolve_checkpoint(dir, "latest"); }, {latest, "names " + d / "step_00000099.h5", "does not exist"});
    write_file_bytes(latest, "step_00000001.h5\r\n");
    EXPECT_EQ(resolve_checkpoint(dir, "latest"), d / "step_00000001.h5");
    write_file_bytes(latest, "step_00000001.h5");
    EXPECT_EQ(resolve_checkpoint(dir, "latest"), d / "step_00000001.h5");
    fs::remove(latest);
    expect_error([&] { resolve_checkpoint(dir, "latest"); }, {"no checkpoint pointer " + latest, "nothing to resume"});
    // A save over a damaged pointer replaces it and says it was left as it was until then.
    write_file_bytes(latest, std::string("\0", 1));
    save_checkpoint(dir, checkpoint_name(2), m.ps, state(2));
    EXPECT_EQ(read_file_bytes(latest), "step_00000002.h5\n");
}

// ---- HDF5 files ------------------------------------------------------------------------

TEST(CheckpointFaults, FileLockedByAnotherWriterSaysSoAndNamesTheVariable) {
    TempDir d;
    const std::string path = d / "held.h5";
    {
        H5File f(path, H5File::Mode::create_exclusive);
        const float v[2] = {1, 2};
        f.write_f32("/x", v, {2});
    }
    // A child process takes the lock an HDF5 writer (h5py.File(path, "a")) holds:
    // flock(LOCK_EX) on its own descriptor of the file.
    int ready[2], release[2];
    ASSERT_EQ(::pipe(ready), 0);
    ASSERT_EQ(::pipe(release), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const int fd = ::open(path.c_str(), O_RDWR);
        const char ok = (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0) ? '1' : '0';
        ::close(ready[0]);
        ::close(release[1]);
        if (::write(ready[1], &ok, 1) != 1) ::_exit(2);
        char c;
        while (::read(release[0], &c, 1) > 0) {}  // until the parent closes its end
        ::_exit(0);
    }
    ::close(ready[1]);
    ::close(release[0]);
    char ok = 0;
    ASSERT_EQ(::read(ready[0], &ok, 1), 1);
    ASSERT_EQ(ok, '1');
    for (auto mode : {H5File::Mode::read, H5File::Mode::read_write})
        expect_error([&] { H5File f(path, mode); },
                     {"cannot open HDF5 file " + path + ": it is locked, another process holds it open for writing",
                      "HDF5_USE_FILE_LOCKING=FALSE"});
    ::close(release[1]);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ::close(ready[0]);
    // Unlocked again; a truncated file is still "truncated or corrupt", not a lock.
    EXPECT_NO_THROW(H5File(path, H5File::Mode::read));
    const std::string bytes = read_file_bytes(path);
    write_file_bytes(d / "cut.h5", bytes.substr(0, bytes.size() / 2));
    try {
        H5File f(d / "cut.h5", H5File::Mode::read);
        ADD_FAILURE() << "a truncated file opened";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(d / "cut.h5"), std::string::npos) << msg;
        EXPECT_NE(msg.find("truncated or corrupt"), std::string::npos) << msg;
        EXPECT_EQ(msg.find("locked"), std::string::npos) << msg;
    }
}

TEST(CheckpointFaults, ShapeClaimingTwoToTheFortyRowsIsRefusedBeforeAllocating) {
    TempDir d;
    const std::string path = d / "huge.h5";
    {
        // A chunked dataset whose space is allocated only when written: a tiny file
        // whose /tokens claims 2^40 rows of 16 ids (64 TiB).
        H5File f(path, H5File::Mode::create_exclusive);
        std::lock_guard<std::recursive_mutex> lock(io::hdf5_mutex());
        const hsize_t dims[2] = {hsize_t(1) << 40, 16}, chunk[2] = {1024, 16};
        H5Id space(H5Screate_simple(2, dims, nullptr));
        H5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
        ASSERT_GE(H5Pset_chunk(dcpl.get(), 2, chunk), 0);
        H5Id ds(H5Dcreate2(f.id(), "/tokens", H5T_STD_I32LE, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
        ASSERT_TRUE(ds.valid());
    }
    EXPECT_LT(fs::file_size(path), uintmax_t(1) << 20);
    const H5File f(path, H5File::Mode::read);
    EXPECT_EQ(f.shape("/tokens"), (std::vector<int64_t>{int64_t(1) << 40, 16}));
    expect_error([&] { f.read_i32("/tokens"); },
                 {path, "dataset '/tokens' has shape [1099511627776, 16], more bytes than this machine's memory",
                  "refusing to read it"});
}

TEST(CheckpointFaults, DatasetWriteRefusedByTheFileSystemLeavesNoFile) {
    TempDir d;
    io::DatasetContents c;
    c.count = 64;
    c.image_size = 28;
    c.channels = 1;
    c.context_length = 4;
    c.images.assign(size_t(64) * 28 * 28, 7);
    c.tokens.assign(size_t(64) * 4, 1);
    c.captions.assign(64, "a caption");
    const std::string path = d / "data.h5";
    with_file_size_limit(rlim_t(16) << 10, [&] {
        expect_error([&] { io::write_dataset(path, c, io::DatasetAttributes{"tok", "src", "cmd", {}, {}}); },
                     {"cannot write " + path + ".tmp", "File too large"});
    });
    EXPECT_TRUE(listing(d.path.string()).empty());
    io::write_dataset(path, c, io::DatasetAttributes{"tok", "src", "cmd", {}, {}});
    const H5File f(path, H5File::Mode::read);
    EXPECT_EQ(f.read_u8("/images"), c.images);
    EXPECT_EQ(f.attr_string("/", "tokenizer_id"), "tok");
}

TEST(CheckpointFaults, WriteNewFileReportsTheSystemReasonAndRemovesThePartialFile) {
    TempDir d;
    const std::string data(100000, 'x');
    with_file_size_limit(rlim_t(4096), [&] {
        expect_error([&] { io::write_new_file(d / "f", data.data(), data.size()); },
                     {"cannot write " + d / "f" + " (100000 bytes;", "File too large"});
    });
    EXPECT_FALSE(fs::exists(d / "f"));
    io::write_new_file(d / "f", data.data(), data.size());
    EXPECT_EQ(read_file_bytes(d / "f"), data);
    expect_error([&] { io::write_new_file(d / "f", "y", 1); }, {"cannot create " + d / "f", "File exists"});
    EXPECT_EQ(read_file_bytes(d / "f"), data);
    EXPECT_EQ(io::describe_errno(ENOSPC), "No space left on device (disk full)");
}

// A writer killed midway (kill -9, a rank lost under mpirun) leaves no partial file
// under any name: the bytes go to an unnamed file (O_TMPFILE) that is named only when
// complete. A child writes 4 MiB files one after another and is killed after 150 ms,
// almost surely inside a write; every file present must then be whole.
TEST(CheckpointFaults, AWriterKilledMidwayLeavesOnlyWholeFiles) {
    TempDir d;
    constexpr size_t kBytes = size_t(4) << 20;
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::string data(kBytes, 'z');
        try {
            for (int i = 0;; ++i) io::write_new_file(d / ("f" + std::to_string(i)), data.data(), data.size());
        } catch (...) {
            ::_exit(1);
        }
    }
    ::usleep(150000);
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));
    // (fallocate gives a half-written file its full size: compare the bytes.)
    const std::string whole(kBytes, 'z');
    for (const auto& e : fs::directory_iterator(d.path))
        EXPECT_TRUE(read_file_bytes(e.path().string()) == whole) << e.path() << " is a partial file";
}

}  // namespace
}  // namespace curaclip
