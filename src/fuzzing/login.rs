//! The `login` target: login and login-response decoding.

use zerocopy::IntoBytes;

use crate::conf::{Conf, DefaultConf};
use crate::msg::{valid_name, LoginLayout, LoginMsg, LoginRspMsg, HEADER_SIZE};

use super::FrameBe;

/// Login and login-response decoding for [`DefaultConf`] and a big-endian
/// configuration with wide user data, on the input as given and resized to
/// a frame; whatever decodes must encode and decode to the same value. Also
/// [`valid_name`] on the input as a name, which must survive a login.
pub fn login(data: &[u8]) {
    login_with::<DefaultConf>(data);
    login_with::<FrameBe>(data);
}

fn same_login<C: Conf>(a: &LoginMsg<C>, b: &LoginMsg<C>) -> bool {
    (a.ack_seq, a.client_seq_start, a.client_seq_end, a.use_shm)
        == (b.ack_seq, b.client_seq_start, b.client_seq_end, b.use_shm)
        && a.user_data.as_bytes() == b.user_data.as_bytes()
        && (&a.client_name, &a.last_server_name) == (&b.client_name, &b.last_server_name)
}

fn same_rsp<C: Conf>(a: &LoginRspMsg<C>, b: &LoginRspMsg<C>) -> bool {
    (a.ack_seq, a.server_seq_start, a.server_seq_end, a.status)
        == (b.ack_seq, b.server_seq_start, b.server_seq_end, b.status)
        && a.user_data.as_bytes() == b.user_data.as_bytes()
        && (&a.server_name, &a.error_msg) == (&b.server_name, &b.error_msg)
}

fn resized(data: &[u8], len: usize) -> Vec<u8> {
    let mut v = data[..data.len().min(len)].to_vec();
    v.resize(len, 0);
    v
}

fn login_with<C: Conf>(data: &[u8])
where
    LoginMsg<C>: std::fmt::Debug,
    LoginRspMsg<C>: std::fmt::Debug,
{
    type L<C> = LoginLayout<C>;
    let _ = LoginMsg::<C>::header_plausible(data);
    for frame in [data, &resized(data, L::<C>::LOGIN_FRAME)[..]] {
        if let Ok(m) = LoginMsg::<C>::decode(frame) {
            assert!(LoginMsg::<C>::header_plausible(&frame[..HEADER_SIZE]));
            assert!(valid_name(&m.client_name, C::NAME_SIZE));
            assert!(m.last_server_name.is_empty() || valid_name(&m.last_server_name, C::NAME_SIZE));
            let bytes = m.encode();
            assert_eq!(bytes.len(), L::<C>::LOGIN_FRAME);
            let again = LoginMsg::<C>::decode(&bytes).expect("a decoded login re-encodes decodably");
            assert!(same_login(&m, &again), "login round trip: {m:?} became {again:?}");
            assert_eq!(again.encode(), bytes);
        }
    }
    for frame in [data, &resized(data, L::<C>::RSP_FRAME)[..]] {
        if let Ok(m) = LoginRspMsg::<C>::decode(frame) {
            assert!(valid_name(&m.server_name, C::NAME_SIZE));
            let bytes = m.encode();
            assert_eq!(bytes.len(), L::<C>::RSP_FRAME);
            let again = LoginRspMsg::<C>::decode(&bytes).expect("a decoded response re-encodes decodably");
            assert!(same_rsp(&m, &again), "response round trip: {m:?} became {again:?}");
            assert_eq!(again.encode(), bytes);
        }
    }
    // The input as a name: a valid one must come back unchanged.
    let name = String::from_utf8_lossy(&data[..data.len().min(2 * C::NAME_SIZE)]);
    for name_size in [C::NAME_SIZE, data.len() % 20] {
        let _ = valid_name(&name, name_size);
    }
    if valid_name(&name, C::NAME_SIZE) {
        let m = LoginMsg::<C> {
            ack_seq: 1,
            client_seq_start: 2,
            client_seq_end: 3,
            user_data: Default::default(),
            use_shm: false,
            client_name: name.to_string(),
            last_server_name: name.to_string(),
        };
        let d = LoginMsg::<C>::decode(&m.encode()).expect("a login with valid names decodes");
        assert!(same_login(&m, &d), "valid name {name:?} changed: {d:?}");
        let mut r = LoginRspMsg::<C>::new(&name, crate::LoginStatus::Ok);
        r.error_msg = name.to_string();
        let d = LoginRspMsg::<C>::decode(&r.encode()).expect("a response with a valid name decodes");
        assert!(same_rsp(&r, &d), "valid name {name:?} changed: {d:?}");
    }
}
