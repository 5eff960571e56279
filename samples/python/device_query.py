"""device_query - the runtime's versions and every property of each visible H20 device.

Run (after the README's set-up): python3 samples/python/device_query.py
Prints PASS when every device reports consistent properties.
"""

import sys

import h20


def main():
    count = h20.device_count()
    print("h20 package {}, runtime {}, driver {}, KDA kernels on {}".format(
        h20.__version__, h20.runtime_version(), h20.driver_version(), h20.kda.isa()))
    print("{} device(s)".format(count))
    ok = count > 0
    for i in range(count):
        dev = h20.Device(i)
        props = dev.properties
        free, total = dev.memory_info()
        print("\nDevice {}: {} ({})".format(i, dev.name, dev.pci_bus_id))
        for key in sorted(props):
            print("  {:28} {}".format(key, props[key]))
        print("  {:28} {:.1f} of {:.1f} GiB".format("memory free", free / 2**30, total / 2**30))
        ok = ok and props["total_memory"] == total and 0 < free <= total
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
