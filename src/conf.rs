//! Compile-time configuration of connections ([`Conf`]) and servers ([`ServerConf`]).
//!
//! Every setting of the C++ `Conf` is an associated constant with the C++
//! default, so a configuration only names what it changes. Invalid values fail
//! the build: the first use of a configuration evaluates [`Conf`]'s checks in a
//! constant, and a failed `assert!` there is a compile error, not a panic.
//!
//! ```
//! use tcpshm::{Conf, ServerConf};
//!
//! struct MyConf;
//! impl Conf for MyConf {
//!     const SHM_QUEUE_SIZE: usize = 1 << 20;
//!     type LoginUserData = u8;
//!     type LoginRspUserData = u8;
//!     type ConnectionUserData = ();
//! }
//! impl ServerConf for MyConf {
//!     const MAX_TCP_GRPS: usize = 2;
//! }
//! ```
//!
//! A value the library cannot work with does not compile:
//!
//! ```compile_fail
//! use tcpshm::{Conf, TcpShmClient};
//! struct Bad;
//! impl Conf for Bad {
//!     const TCP_QUEUE_SIZE: usize = 2001; // not a multiple of 8
//!     type LoginUserData = u8;
//!     type LoginRspUserData = u8;
//!     type ConnectionUserData = ();
//! }
//! let _ = TcpShmClient::<Bad>::new("client", "/tmp");
//! ```

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Plain-old-data that crosses the wire inside the login messages: any
/// `#[repr(C)]` type that derives zerocopy's `FromBytes`, `IntoBytes`,
/// `Immutable` and `KnownLayout`. Its byte order is the user's business, as in
/// the C++ original.
pub trait LoginData: FromBytes + IntoBytes + Immutable + KnownLayout + Copy + Send + 'static {}
impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy + Send + 'static> LoginData for T {}

/// Connection settings shared by client and server. Both peers of a
/// connection must agree on `NAME_SIZE`, `SHM_QUEUE_SIZE`, `TO_LITTLE_ENDIAN`
/// and the two login data types; the rest is local.
pub trait Conf: 'static {
    /// Bytes of a client or server name on the wire, including the ending NUL.
    const NAME_SIZE: usize = 16;
    /// Bytes of each shared-memory queue; `SHM_QUEUE_SIZE / 64` must be a power of two.
    const SHM_QUEUE_SIZE: usize = 2048;
    /// Byte order of headers and login fields on the wire (true on x86 majorities).
    const TO_LITTLE_ENDIAN: bool = true;
    /// Bytes of the persistent TCP send queue; a multiple of 8.
    const TCP_QUEUE_SIZE: usize = 2000;
    /// Initial bytes of the TCP receive buffer; a multiple of 8.
    const TCP_RECV_BUF_INIT_SIZE: usize = 2000;
    /// Largest the TCP receive buffer may grow; a multiple of 8, at least the initial size.
    /// A frame larger than this closes the connection.
    ///
    /// Acks travel in order with the messages. A side whose handler does not
    /// pop (say, because its own send queue is full until the peer acks)
    /// keeps reading behind the unpopped message until this buffer is full;
    /// it sees the peer's newer ack only if the ack fits behind them
    /// (`tests/flow_control.rs`). The peer
    /// cannot have more in flight than its `TCP_QUEUE_SIZE` (unacknowledged
    /// messages stay in its queue), so keep this above the peer's
    /// `TCP_QUEUE_SIZE` (with room for a few heartbeats) in any protocol where
    /// a handler may wait on its own full queue; the C++ original has the
    /// same coupling.
    const TCP_RECV_BUF_MAX_SIZE: usize = 8000;
    /// Whether to set `TCP_NODELAY` on connection sockets.
    const TCP_NO_DELAY: bool = true;
    /// A connection that received nothing for this long (in the unit of the
    /// `now` passed to the poll calls) is closed with [`CloseReason::Timeout`](crate::CloseReason::Timeout).
    const CONNECTION_TIMEOUT: i64 = 10;
    /// A side that sent nothing for this long sends what is pending, or a heartbeat.
    const HEARTBEAT_INTERVAL: i64 = 3;
    /// User data in the login message (credentials, say). Must match the peer's.
    type LoginUserData: LoginData + Default;
    /// User data in the login response. Must match the peer's.
    type LoginRspUserData: LoginData + Default;
    /// Data the user keeps with each connection; never leaves the process.
    type ConnectionUserData: Default + Send + 'static;
}

/// Server settings on top of [`Conf`].
pub trait ServerConf: Conf {
    /// Most sockets that may wait for their login at once. When all are
    /// waiting and another connects, the one that waited longest is closed,
    /// so sockets that never log in cannot starve honest clients.
    const MAX_NEW_CONNECTIONS: usize = 5;
    /// Connection slots in each shared-memory group.
    const MAX_SHM_CONNS_PER_GRP: usize = 4;
    /// Number of shared-memory groups (each polled by `poll_shm(grp)`).
    const MAX_SHM_GRPS: usize = 1;
    /// Connection slots in each TCP group.
    const MAX_TCP_CONNS_PER_GRP: usize = 4;
    /// Number of TCP groups (each polled by `poll_tcp(now, grp)`).
    const MAX_TCP_GRPS: usize = 1;
    /// A socket that has not completed its login within this long is closed.
    const NEW_CONNECTION_TIMEOUT: i64 = 3;
}

/// The configuration of the C++ original's defaults with one-byte login data.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultConf;

impl Conf for DefaultConf {
    type LoginUserData = u8;
    type LoginRspUserData = u8;
    type ConnectionUserData = ();
}

impl ServerConf for DefaultConf {}

/// Compile-time validation of a [`Conf`]; evaluated by every constructor.
pub(crate) struct Checked<C>(core::marker::PhantomData<C>);

impl<C: Conf> Checked<C> {
    pub(crate) const CONF: () = {
        assert!(C::NAME_SIZE >= 2, "Conf::NAME_SIZE must hold at least one char and the NUL");
        assert!(C::NAME_SIZE <= 256, "Conf::NAME_SIZE must be at most 256");
        let blocks = C::SHM_QUEUE_SIZE / 64;
        assert!(
            C::SHM_QUEUE_SIZE % 64 == 0 && blocks.is_power_of_two(),
            "Conf::SHM_QUEUE_SIZE / 64 must be a power of two"
        );
        assert!(C::SHM_QUEUE_SIZE <= 1 << 30, "Conf::SHM_QUEUE_SIZE must be at most 1 GiB (block indices are u32)");
        assert!(
            C::TCP_QUEUE_SIZE % 8 == 0 && C::TCP_QUEUE_SIZE > 0,
            "Conf::TCP_QUEUE_SIZE must be a non-zero multiple of 8"
        );
        assert!(C::TCP_QUEUE_SIZE <= 1 << 30, "Conf::TCP_QUEUE_SIZE must be at most 1 GiB");
        assert!(
            C::TCP_RECV_BUF_INIT_SIZE % 8 == 0 && C::TCP_RECV_BUF_INIT_SIZE > 0,
            "Conf::TCP_RECV_BUF_INIT_SIZE must be a non-zero multiple of 8"
        );
        assert!(C::TCP_RECV_BUF_MAX_SIZE % 8 == 0, "Conf::TCP_RECV_BUF_MAX_SIZE must be a multiple of 8");
        assert!(
            C::TCP_RECV_BUF_MAX_SIZE >= C::TCP_RECV_BUF_INIT_SIZE,
            "Conf::TCP_RECV_BUF_MAX_SIZE must be at least Conf::TCP_RECV_BUF_INIT_SIZE"
        );
        assert!(C::CONNECTION_TIMEOUT > 0, "Conf::CONNECTION_TIMEOUT must be positive");
        assert!(C::HEARTBEAT_INTERVAL > 0, "Conf::HEARTBEAT_INTERVAL must be positive");
    };
}

impl<C: ServerConf> Checked<C> {
    pub(crate) const SERVER_CONF: () = {
        #[allow(clippy::let_unit_value)]
        let () = Self::CONF;
        assert!(C::MAX_NEW_CONNECTIONS > 0, "ServerConf::MAX_NEW_CONNECTIONS must be positive");
        assert!(
            C::MAX_SHM_GRPS == 0 || C::MAX_SHM_CONNS_PER_GRP > 0,
            "ServerConf::MAX_SHM_CONNS_PER_GRP must be positive when there are shm groups"
        );
        assert!(
            C::MAX_TCP_GRPS == 0 || C::MAX_TCP_CONNS_PER_GRP > 0,
            "ServerConf::MAX_TCP_CONNS_PER_GRP must be positive when there are tcp groups"
        );
        assert!(C::NEW_CONNECTION_TIMEOUT > 0, "ServerConf::NEW_CONNECTION_TIMEOUT must be positive");
    };
}
