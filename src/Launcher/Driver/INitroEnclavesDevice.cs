namespace Launcher.Driver;

/// <summary>
/// The Nitro Enclaves device, <c>/dev/nitro_enclaves</c> (<see cref="NitroEnclavesDevice"/>), or the simulator that
/// stands in for it where there is no Nitro hypervisor (<see cref="Simulation.SimulatedNitroDevice"/>).
/// </summary>
public interface INitroEnclavesDevice : IDisposable
{
    /// <summary>
    /// <c>NE_CREATE_VM</c>: a new enclave slot. The enclave lives exactly as long as the returned object is not
    /// disposed (the driver stops it and frees its slot, cores and pinned memory when the enclave fd is closed).
    /// </summary>
    /// <exception cref="EnclaveException">E29 with the driver's reason, e.g. <see cref="NeError.NoCpusAvailableInPool"/>.</exception>
    IEnclaveVm CreateVm();
}

/// <summary>
/// One enclave slot: the enclave fd. One method per ioctl (include/uapi/linux/nitro_enclaves.h); every failure is an
/// <see cref="EnclaveException"/> with <see cref="LaunchError.IoctlFailure"/> and the errno.
/// </summary>
public interface IEnclaveVm : IDisposable
{
    /// <summary>The slot uid <c>NE_CREATE_VM</c> wrote back (the enclave ID's suffix).</summary>
    ulong SlotUid { get; }

    /// <summary><c>NE_ADD_VCPU</c>: adds the CPU, or with 0 lets the driver pick one; returns the CPU added.</summary>
    uint AddVcpu(uint vcpuId);

    /// <summary><c>NE_GET_IMAGE_LOAD_INFO</c>: the offset in enclave memory where the EIF must be (8 MiB).</summary>
    ulong GetImageLoadInfo(ulong flags);

    /// <summary>
    /// <c>NE_SET_USER_MEMORY_REGION</c>: donates <paramref name="size"/> bytes at <paramref name="userspaceAddress"/>.
    /// The mapping must stay in place until this object is disposed: the driver has pinned its pages for the enclave.
    /// </summary>
    void SetUserMemoryRegion(ulong flags, ulong size, nint userspaceAddress);

    /// <summary><c>NE_START_ENCLAVE</c>: starts it; returns the enclave CID (the one asked for, or the one assigned for 0).</summary>
    ulong StartEnclave(ulong flags, ulong enclaveCid);

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for the driver's out-of-band event (poll reports <c>POLLHUP</c> on the
    /// enclave fd once the hypervisor says the running enclave changed state, e.g. it shut itself down). True when
    /// the event came: the enclave is gone.
    /// </summary>
    /// <exception cref="EnclaveException">E37 when polling fails.</exception>
    bool WaitForEvent(TimeSpan timeout);
}
