//! The message header, received-message views and the login messages, byte
//! for byte as the C++ tcpshm puts them on the wire (see PROTOCOL.md).
//!
//! The login messages are C structs whose layout depends on `NAME_SIZE` and
//! the user-data types, which stable Rust cannot put in a generic struct; so
//! [`LoginLayout`] computes the C offsets as constants and the codecs read and
//! write fields at those offsets. Padding and unused name bytes are zeroed on
//! encode and ignored on decode.

use core::marker::PhantomData;
use core::mem::{align_of, size_of};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::conf::Conf;

/// Message type of heartbeats; application types must not use it.
pub const MSG_TYPE_HEARTBEAT: u16 = 0;
/// Message type of the login message (only at connection start).
pub const MSG_TYPE_LOGIN: u16 = 1;
/// Message type of the login response (only at connection start).
pub const MSG_TYPE_LOGIN_RSP: u16 = 2;
/// Size of [`MsgHeader`] and the unit of TCP framing.
pub const HEADER_SIZE: usize = 8;
/// Largest body a message can carry: the size field is 16 bits and counts the header.
pub const MAX_BODY_SIZE: usize = u16::MAX as usize - HEADER_SIZE;
/// Bytes of the login response's `error_msg`.
pub const ERROR_MSG_SIZE: usize = 32;

/// The 8-byte header in front of every message.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct MsgHeader {
    /// Size of the message including this header, before padding.
    pub size: u16,
    /// 0 heartbeat, 1 login, 2 login response, else the application's type.
    pub msg_type: u16,
    /// TCP mode: the number of the peer's messages this side has consumed.
    pub ack_seq: u32,
}

impl MsgHeader {
    /// Converts every field between host order and the configured wire order
    /// (the conversion is its own inverse).
    #[inline]
    pub fn swap_wire<C: Conf>(self) -> Self {
        MsgHeader {
            size: wire_u16::<C>(self.size),
            msg_type: wire_u16::<C>(self.msg_type),
            ack_seq: wire_u32::<C>(self.ack_seq),
        }
    }

    /// Bytes this message occupies in a TCP stream: `size` rounded up to 8.
    #[inline]
    pub fn padded_size(self) -> usize {
        (self.size as usize + 7) & !7
    }
}

/// Converts a u16 between host order and `C`'s wire order.
#[inline(always)]
pub fn wire_u16<C: Conf>(v: u16) -> u16 {
    if C::TO_LITTLE_ENDIAN {
        v.to_le()
    } else {
        v.to_be()
    }
}

/// Converts a u32 between host order and `C`'s wire order.
#[inline(always)]
pub fn wire_u32<C: Conf>(v: u32) -> u32 {
    if C::TO_LITTLE_ENDIAN {
        v.to_le()
    } else {
        v.to_be()
    }
}

/// A received application message, in place in the receive buffer or the
/// shared-memory queue. Its body starts 8-byte aligned.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    msg_type: u16,
    body: &'a [u8],
}

impl<'a> Msg<'a> {
    #[inline]
    pub(crate) fn new(msg_type: u16, body: &'a [u8]) -> Self {
        Msg { msg_type, body }
    }

    /// The application's message type (never 0).
    #[inline]
    pub fn msg_type(&self) -> u16 {
        self.msg_type
    }

    /// The body, without header or padding.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The header's size field: body plus header.
    #[inline]
    pub fn size(&self) -> u16 {
        (self.body.len() + HEADER_SIZE) as u16
    }

    /// Reads the body as a `#[repr(C)]` struct, in place; `None` if the body
    /// is shorter than `T` (a longer body is fine: C++ peers may pad).
    #[inline]
    pub fn read<T: FromBytes + KnownLayout + Immutable>(&self) -> Option<&'a T> {
        T::ref_from_prefix(self.body).ok().map(|(v, _)| v)
    }
}

const fn align_up(n: usize, a: usize) -> usize {
    n.div_ceil(a) * a
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Offsets of the login and login-response fields for a configuration, as the
/// C compiler lays the structs out (offsets count from the start of the frame).
pub struct LoginLayout<C>(PhantomData<C>);

impl<C: Conf> LoginLayout<C> {
    const LOGIN_ALIGN: usize = max(4, align_of::<C::LoginUserData>());
    /// Offset of `client_seq_start`.
    const L_SEQ_START: usize = HEADER_SIZE;
    const L_SEQ_END: usize = HEADER_SIZE + 4;
    const L_USER: usize = HEADER_SIZE + align_up(8, align_of::<C::LoginUserData>());
    const L_USE_SHM: usize = Self::L_USER + size_of::<C::LoginUserData>();
    const L_CLIENT_NAME: usize = Self::L_USE_SHM + 1;
    const L_LAST_SERVER: usize = Self::L_CLIENT_NAME + C::NAME_SIZE;
    /// The header's size field of a login: header plus `sizeof(LoginMsg)`.
    pub const LOGIN_SIZE: usize =
        HEADER_SIZE + align_up(Self::L_LAST_SERVER + C::NAME_SIZE - HEADER_SIZE, Self::LOGIN_ALIGN);
    /// Bytes of a login frame on the wire.
    pub const LOGIN_FRAME: usize = align_up(Self::LOGIN_SIZE, 8);

    const RSP_ALIGN: usize = max(4, align_of::<C::LoginRspUserData>());
    const R_USER: usize = HEADER_SIZE + align_up(8, align_of::<C::LoginRspUserData>());
    const R_STATUS: usize = Self::R_USER + size_of::<C::LoginRspUserData>();
    const R_SERVER_NAME: usize = Self::R_STATUS + 1;
    const R_ERROR_MSG: usize = Self::R_SERVER_NAME + C::NAME_SIZE;
    /// The header's size field of a login response.
    pub const RSP_SIZE: usize =
        HEADER_SIZE + align_up(Self::R_ERROR_MSG + ERROR_MSG_SIZE - HEADER_SIZE, Self::RSP_ALIGN);
    /// Bytes of a login-response frame on the wire.
    pub const RSP_FRAME: usize = align_up(Self::RSP_SIZE, 8);

    pub(crate) const CHECK: () = {
        assert!(
            Self::RSP_SIZE <= u16::MAX as usize && Self::LOGIN_SIZE <= u16::MAX as usize,
            "login user data too large for a 16-bit message size"
        );
    };
}

/// Why a login frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDecodeError {
    /// The buffer or the header's size field is not the configured login size.
    WrongSize,
    /// The header's type is not the expected login type.
    WrongType,
    /// A name is empty, not NUL-terminated within `NAME_SIZE`, not UTF-8, or holds `/`.
    InvalidName,
}

/// Status of a login response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStatus {
    /// Logged in.
    Ok,
    /// The sequence numbers of the two sides disagree.
    SeqMismatch,
    /// Any other rejection; `error_msg` says which.
    Rejected,
}

impl LoginStatus {
    fn to_wire(self) -> u8 {
        match self {
            LoginStatus::Ok => 0,
            LoginStatus::SeqMismatch => 1,
            LoginStatus::Rejected => 2,
        }
    }

    fn from_wire(v: u8) -> Self {
        match v {
            0 => LoginStatus::Ok,
            1 => LoginStatus::SeqMismatch,
            _ => LoginStatus::Rejected,
        }
    }
}

/// The six numbers of a login whose sequence numbers disagree: each side's
/// ack and the range of its queue. Each side's ack must lie within the other
/// side's `[seq_start, seq_end]`; fixing it is the operator's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqMismatch {
    /// This side's ack (peer messages consumed).
    pub local_ack_seq: u32,
    /// Oldest unacknowledged message in this side's queue.
    pub local_seq_start: u32,
    /// Number of this side's next message.
    pub local_seq_end: u32,
    /// The peer's ack.
    pub remote_ack_seq: u32,
    /// Oldest unacknowledged message in the peer's queue.
    pub remote_seq_start: u32,
    /// Number of the peer's next message.
    pub remote_seq_end: u32,
}

impl SeqMismatch {
    /// Whether both acks lie within the other side's queue range.
    pub fn is_consistent(&self) -> bool {
        crate::ptcp::ack_in_range(self.remote_ack_seq, self.local_seq_start, self.local_seq_end)
            && crate::ptcp::ack_in_range(self.local_ack_seq, self.remote_seq_start, self.remote_seq_end)
    }
}

impl std::fmt::Display for SeqMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "local_ack_seq: {} local_seq_start: {} local_seq_end: {} remote_ack_seq: {} remote_seq_start: {} remote_seq_end: {}",
            self.local_ack_seq,
            self.local_seq_start,
            self.local_seq_end,
            self.remote_ack_seq,
            self.remote_seq_start,
            self.remote_seq_end
        )
    }
}

/// The client's login, decoded.
#[derive(Debug, Clone)]
pub struct LoginMsg<C: Conf> {
    /// The client's ack (peer messages it has consumed).
    pub ack_seq: u32,
    /// Oldest unacknowledged sequence number in the client's queue.
    pub client_seq_start: u32,
    /// Sequence number the client's next message will get.
    pub client_seq_end: u32,
    /// The user's login data.
    pub user_data: C::LoginUserData,
    /// Whether the client asks for shared-memory mode.
    pub use_shm: bool,
    /// The client's name.
    pub client_name: String,
    /// The server name the client last logged in to, empty on its first login.
    pub last_server_name: String,
}

/// The server's login response, decoded.
#[derive(Debug, Clone)]
pub struct LoginRspMsg<C: Conf> {
    /// The server's ack. Meaningful only when `status` is not `Rejected`.
    pub ack_seq: u32,
    /// Oldest unacknowledged sequence number in the server's queue.
    pub server_seq_start: u32,
    /// Sequence number the server's next message will get.
    pub server_seq_end: u32,
    /// The user's response data.
    pub user_data: C::LoginRspUserData,
    /// Outcome of the login.
    pub status: LoginStatus,
    /// The server's name.
    pub server_name: String,
    /// Why the login was rejected; empty on success.
    pub error_msg: String,
}

fn put_u32<C: Conf>(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&wire_u32::<C>(v).to_ne_bytes());
}

fn get_u32<C: Conf>(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    wire_u32::<C>(u32::from_ne_bytes(b))
}

fn put_header<C: Conf>(buf: &mut [u8], size: usize, msg_type: u16, ack_seq: u32) {
    let h = MsgHeader { size: size as u16, msg_type, ack_seq }.swap_wire::<C>();
    buf[..HEADER_SIZE].copy_from_slice(h.as_bytes());
}

fn get_header<C: Conf>(buf: &[u8]) -> MsgHeader {
    let (h, _) = MsgHeader::read_from_prefix(buf).unwrap_or_default();
    h.swap_wire::<C>()
}

/// Writes a NUL-terminated name into a zeroed field (truncating to the field).
fn put_str(field: &mut [u8], s: &str) {
    let s = clip(s, field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary: a truncated field must still be UTF-8, or decoding it again
/// gives another string (found by the `login` fuzz target).
fn clip(s: &str, max: usize) -> &str {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

/// The bytes of a NUL-terminated field up to the first NUL (or the whole field).
fn c_str(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Whether `name` can be used as a client or server name with `NAME_SIZE`
/// bytes: non-empty, room for the NUL, usable inside a file name, and
/// without `_`.
///
/// Queue files are named `<sender>_<receiver>` (the C++ original's names
/// for the shared-memory objects, which both sides must agree on). With a
/// `_` inside a name two pairs could share a file: server `s` and client
/// `s_x` would write `s_x_s`, also the queue from `s` to `x_s`. Without it
/// a file name splits at its one `_`, so every pair has files of its own.
pub fn valid_name(name: &str, name_size: usize) -> bool {
    !name.is_empty()
        && name.len() < name_size
        && !name.bytes().any(|b| b == 0 || b == b'/' || b == b'_')
        && name != "."
        && name != ".."
}

/// Decodes a name field; `None` if it is not a valid name (see [`valid_name`]).
fn get_name(field: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(c_str(field)).ok()?;
    valid_name(s, field.len()).then(|| s.to_owned())
}

impl<C: Conf> LoginMsg<C> {
    /// Encodes the login frame ([`LoginLayout::LOGIN_FRAME`] bytes, padding zeroed).
    pub fn encode(&self) -> Vec<u8> {
        #[allow(clippy::let_unit_value)]
        let () = LoginLayout::<C>::CHECK;
        type L<C> = LoginLayout<C>;
        let mut buf = vec![0u8; L::<C>::LOGIN_FRAME];
        put_header::<C>(&mut buf, L::<C>::LOGIN_SIZE, MSG_TYPE_LOGIN, self.ack_seq);
        put_u32::<C>(&mut buf, L::<C>::L_SEQ_START, self.client_seq_start);
        put_u32::<C>(&mut buf, L::<C>::L_SEQ_END, self.client_seq_end);
        buf[L::<C>::L_USER..L::<C>::L_USE_SHM].copy_from_slice(self.user_data.as_bytes());
        buf[L::<C>::L_USE_SHM] = self.use_shm as u8;
        put_str(&mut buf[L::<C>::L_CLIENT_NAME..L::<C>::L_LAST_SERVER], &self.client_name);
        put_str(&mut buf[L::<C>::L_LAST_SERVER..L::<C>::L_LAST_SERVER + C::NAME_SIZE], &self.last_server_name);
        buf
    }

    /// Decodes a whole login frame. The client name must be valid; a last
    /// server name that is not is read as empty (a first login).
    pub fn decode(frame: &[u8]) -> Result<Self, LoginDecodeError> {
        type L<C> = LoginLayout<C>;
        if frame.len() != L::<C>::LOGIN_FRAME {
            return Err(LoginDecodeError::WrongSize);
        }
        let h = get_header::<C>(frame);
        if h.size as usize != L::<C>::LOGIN_SIZE {
            return Err(LoginDecodeError::WrongSize);
        }
        if h.msg_type != MSG_TYPE_LOGIN {
            return Err(LoginDecodeError::WrongType);
        }
        let client_name =
            get_name(&frame[L::<C>::L_CLIENT_NAME..L::<C>::L_LAST_SERVER]).ok_or(LoginDecodeError::InvalidName)?;
        let last_server_name =
            get_name(&frame[L::<C>::L_LAST_SERVER..L::<C>::L_LAST_SERVER + C::NAME_SIZE]).unwrap_or_default();
        let (user_data, _) =
            C::LoginUserData::read_from_prefix(&frame[L::<C>::L_USER..]).map_err(|_| LoginDecodeError::WrongSize)?;
        Ok(LoginMsg {
            ack_seq: h.ack_seq,
            client_seq_start: get_u32::<C>(frame, L::<C>::L_SEQ_START),
            client_seq_end: get_u32::<C>(frame, L::<C>::L_SEQ_END),
            user_data,
            use_shm: frame[L::<C>::L_USE_SHM] != 0,
            client_name,
            last_server_name,
        })
    }

    /// Checks the first 8 bytes of a frame that is still arriving: `false` if
    /// they cannot start a login of this configuration.
    pub fn header_plausible(header: &[u8]) -> bool {
        let h = get_header::<C>(header);
        h.size as usize == LoginLayout::<C>::LOGIN_SIZE && h.msg_type == MSG_TYPE_LOGIN
    }
}

impl<C: Conf> LoginRspMsg<C> {
    /// A response with the given status and everything else empty or zero.
    pub fn new(server_name: &str, status: LoginStatus) -> Self {
        LoginRspMsg {
            ack_seq: 0,
            server_seq_start: 0,
            server_seq_end: 0,
            user_data: Default::default(),
            status,
            server_name: server_name.to_owned(),
            error_msg: String::new(),
        }
    }

    /// Encodes the response frame ([`LoginLayout::RSP_FRAME`] bytes, padding zeroed).
    pub fn encode(&self) -> Vec<u8> {
        #[allow(clippy::let_unit_value)]
        let () = LoginLayout::<C>::CHECK;
        type L<C> = LoginLayout<C>;
        let mut buf = vec![0u8; L::<C>::RSP_FRAME];
        put_header::<C>(&mut buf, L::<C>::RSP_SIZE, MSG_TYPE_LOGIN_RSP, self.ack_seq);
        put_u32::<C>(&mut buf, L::<C>::L_SEQ_START, self.server_seq_start);
        put_u32::<C>(&mut buf, L::<C>::L_SEQ_END, self.server_seq_end);
        buf[L::<C>::R_USER..L::<C>::R_STATUS].copy_from_slice(self.user_data.as_bytes());
        buf[L::<C>::R_STATUS] = self.status.to_wire();
        put_str(&mut buf[L::<C>::R_SERVER_NAME..L::<C>::R_ERROR_MSG], &self.server_name);
        put_str(&mut buf[L::<C>::R_ERROR_MSG..L::<C>::R_ERROR_MSG + ERROR_MSG_SIZE], &self.error_msg);
        buf
    }

    /// Decodes a whole response frame, validating size, type and server name
    /// as the C++ client does.
    pub fn decode(frame: &[u8]) -> Result<Self, LoginDecodeError> {
        type L<C> = LoginLayout<C>;
        if frame.len() != L::<C>::RSP_FRAME {
            return Err(LoginDecodeError::WrongSize);
        }
        let h = get_header::<C>(frame);
        if h.size as usize != L::<C>::RSP_SIZE {
            return Err(LoginDecodeError::WrongSize);
        }
        if h.msg_type != MSG_TYPE_LOGIN_RSP {
            return Err(LoginDecodeError::WrongType);
        }
        let server_name =
            get_name(&frame[L::<C>::R_SERVER_NAME..L::<C>::R_ERROR_MSG]).ok_or(LoginDecodeError::InvalidName)?;
        let error_msg = c_str(&frame[L::<C>::R_ERROR_MSG..L::<C>::R_ERROR_MSG + ERROR_MSG_SIZE]);
        let (user_data, _) =
            C::LoginRspUserData::read_from_prefix(&frame[L::<C>::R_USER..]).map_err(|_| LoginDecodeError::WrongSize)?;
        Ok(LoginRspMsg {
            ack_seq: h.ack_seq,
            server_seq_start: get_u32::<C>(frame, L::<C>::L_SEQ_START),
            server_seq_end: get_u32::<C>(frame, L::<C>::L_SEQ_END),
            user_data,
            status: LoginStatus::from_wire(frame[L::<C>::R_STATUS]),
            server_name,
            // Clipped to what `encode` can write back (the field keeps a
            // NUL; invalid bytes become 3-byte U+FFFD), so a decoded
            // response re-encodes to itself (found by the `login` fuzz target).
            error_msg: clip(&String::from_utf8_lossy(error_msg), ERROR_MSG_SIZE - 1).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::DefaultConf;

    type L = LoginLayout<DefaultConf>;

    #[test]
    fn default_layout_matches_protocol() {
        assert_eq!(L::LOGIN_SIZE, 52);
        assert_eq!(L::LOGIN_FRAME, 56);
        assert_eq!(L::RSP_SIZE, 68);
        assert_eq!(L::RSP_FRAME, 72);
    }

    #[test]
    fn wide_user_data_is_aligned_like_c() {
        struct Wide;
        impl Conf for Wide {
            type LoginUserData = u64;
            type LoginRspUserData = [u8; 3];
            type ConnectionUserData = ();
        }
        // struct { u32, u32, u64, char, char[16], char[16] } is 8+8+1+32 = 49 -> 56
        assert_eq!(LoginLayout::<Wide>::LOGIN_SIZE, 8 + 56);
        // struct { u32, u32, char[3], char, char[16], char[32] } = 8+3+1+48 = 60
        assert_eq!(LoginLayout::<Wide>::RSP_SIZE, 8 + 60);
    }

    #[test]
    fn login_round_trips_big_endian() {
        struct Be;
        impl Conf for Be {
            const TO_LITTLE_ENDIAN: bool = false;
            type LoginUserData = u8;
            type LoginRspUserData = u8;
            type ConnectionUserData = ();
        }
        let m = LoginMsg::<Be> {
            ack_seq: 7,
            client_seq_start: 0x01020304,
            client_seq_end: 9,
            user_data: 5,
            use_shm: true,
            client_name: "abc".into(),
            last_server_name: "srv".into(),
        };
        let bytes = m.encode();
        assert_eq!(&bytes[..2], &52u16.to_be_bytes());
        assert_eq!(&bytes[8..12], &[1, 2, 3, 4]);
        let d = LoginMsg::<Be>::decode(&bytes).unwrap();
        assert_eq!((d.ack_seq, d.client_seq_start, d.client_seq_end), (7, 0x01020304, 9));
        assert_eq!((d.user_data, d.use_shm), (5, true));
        assert_eq!((d.client_name.as_str(), d.last_server_name.as_str()), ("abc", "srv"));
    }

    #[test]
    fn decode_rejects_bad_frames() {
        let good = LoginMsg::<DefaultConf> {
            ack_seq: 0,
            client_seq_start: 0,
            client_seq_end: 0,
            user_data: 0,
            use_shm: false,
            client_name: "c".into(),
            last_server_name: String::new(),
        }
        .encode();
        assert_eq!(LoginMsg::<DefaultConf>::decode(&good[..55]).unwrap_err(), LoginDecodeError::WrongSize);
        let mut bad = good.clone();
        bad[2] = 3;
        assert_eq!(LoginMsg::<DefaultConf>::decode(&bad).unwrap_err(), LoginDecodeError::WrongType);
        let mut bad = good.clone();
        bad[0] = 53;
        assert_eq!(LoginMsg::<DefaultConf>::decode(&bad).unwrap_err(), LoginDecodeError::WrongSize);
        for name in [&b"\0"[..], b"a/b\0", b"..\0", b"\xff\xfe\0", &[b'x'; 16]] {
            let mut bad = good.clone();
            bad[18..34].fill(0);
            bad[18..18 + name.len()].copy_from_slice(name);
            assert_eq!(LoginMsg::<DefaultConf>::decode(&bad).unwrap_err(), LoginDecodeError::InvalidName, "{name:?}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(valid_name("server", 16));
        assert!(valid_name("fifteen-chars--", 16));
        assert!(!valid_name("sixteen-chars---", 16));
        assert!(!valid_name("s_x", 16), "queue files are <sender>_<receiver>");
        assert!(!valid_name("", 16));
        assert!(!valid_name("a/b", 16));
        assert!(!valid_name("..", 16));
    }

    #[test]
    fn msg_read_checks_length() {
        let buf = [1u64, 2];
        let m = Msg::new(3, buf.as_bytes());
        assert_eq!(m.read::<[u32; 4]>(), Some(&[1, 0, 2, 0]));
        assert_eq!(m.read::<[u32; 5]>(), None);
        assert_eq!(m.size(), 24);
    }
}
