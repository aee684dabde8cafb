#pragma once

#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>

namespace ladder {

// bf16 autocast on one device type for the lifetime of the guard (mixed precision: the parameters stay
// fp32, matrix products and the ops on autocast's lower-precision list compute in bf16). Clears autocast's
// cache of cast weights on exit, as torch.autocast does when its outermost region ends.
class AutocastGuard {
public:
    AutocastGuard(bool on, c10::DeviceType device)
        : m_on(on)
        , m_device(device)
    {
        if (m_on) {
            m_previous = at::autocast::is_autocast_enabled(m_device);
            m_previousDtype = at::autocast::get_autocast_dtype(m_device);
            at::autocast::set_autocast_enabled(m_device, true);
            at::autocast::set_autocast_dtype(m_device, at::kBFloat16);
        }
    }
    ~AutocastGuard()
    {
        if (m_on) {
            at::autocast::set_autocast_enabled(m_device, m_previous);
            at::autocast::set_autocast_dtype(m_device, m_previousDtype);
            at::autocast::clear_cache();
        }
    }
    AutocastGuard(const AutocastGuard&) = delete;
    AutocastGuard& operator=(const AutocastGuard&) = delete;

private:
    bool m_on;
    c10::DeviceType m_device;
    bool m_previous = false;
    at::ScalarType m_previousDtype = at::kBFloat16;
};

} // namespace ladder
