// Real inputs for the prep tests, made by the real writers: tar shards by
// libarchive, images by libvips' encoders (libjpeg-turbo, libpng, libwebp).
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <vips/vips.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/check.h"

namespace curaclip::testing {

struct TarMember {
    std::string name;
    std::string data;
    bool dir = false;
};

// A tar as GNU tar and Python's tarfile write it (pax only where a name needs it).
inline void write_tar(const std::string& path, const std::vector<TarMember>& members, bool ustar = false) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    archive* a = archive_write_new();
    if (ustar) archive_write_set_format_ustar(a);
    else archive_write_set_format_pax_restricted(a);
    archive_write_add_filter_none(a);
    CC_CHECK(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK, archive_error_string(a));
    for (const auto& m : members) {
        archive_entry* e = archive_entry_new();
        archive_entry_set_pathname(e, m.name.c_str());
        archive_entry_set_filetype(e, m.dir ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(e, m.dir ? 0755 : 0644);
        archive_entry_set_size(e, m.dir ? 0 : la_int64_t(m.data.size()));
        archive_entry_set_mtime(e, 1700000000, 0);
        CC_CHECK(archive_write_header(a, e) == ARCHIVE_OK, archive_error_string(a));
        if (!m.dir && !m.data.empty())
            CC_CHECK(archive_write_data(a, m.data.data(), m.data.size()) == la_ssize_t(m.data.size()),
                     archive_error_string(a));
        archive_entry_free(e);
    }
    CC_CHECK(archive_write_close(a) == ARCHIVE_OK, archive_error_string(a));
    archive_write_free(a);
}

// Encodes w x h x c uint8 pixels (c = 1, 3 or 4) as "png", "jpg" (quality 95) or
// "webp" (lossless) with libvips. Call prep::init_image_codecs() (or VIPS_INIT) first.
inline std::string encode_image(const std::vector<uint8_t>& px, int w, int h, int c, const std::string& format) {
    CC_CHECK(px.size() == size_t(w) * size_t(h) * size_t(c), "encode_image: wrong pixel count");
    VipsImage* img = vips_image_new_from_memory_copy(px.data(), px.size(), w, h, c, VIPS_FORMAT_UCHAR);
    CC_CHECK(img != nullptr, "vips_image_new_from_memory_copy: ", vips_error_buffer());
    void* buf = nullptr;
    size_t len = 0;
    int rc = -1;
    if (format == "png") rc = vips_pngsave_buffer(img, &buf, &len, nullptr);
    else if (format == "jpg") rc = vips_jpegsave_buffer(img, &buf, &len, "Q", 95, nullptr);
    else if (format == "webp") rc = vips_webpsave_buffer(img, &buf, &len, "lossless", TRUE, nullptr);
    g_object_unref(img);
    CC_CHECK(rc == 0, "encoding ", format, " failed: ", vips_error_buffer());
    std::string out(static_cast<const char*>(buf), len);
    g_free(buf);
    return out;
}

}  // namespace curaclip::testing
