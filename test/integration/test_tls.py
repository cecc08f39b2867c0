# SPDX-License-Identifier: MIT
"""TLS to the broker, with the real daemon and a real mosquitto: the broker
is verified (chain, validity, name), the gateway shows its own certificate
when asked, nothing older than TLS 1.2 or weaker than 112-bit keys is
accepted, and nothing is ever sent in clear. Each refusal is named in the
daemon's log in words an operator can act on.

Every test makes its own CA and certificates with the openssl CLI in its
tmp_path (EC P-256 keys: fast), so the tests run in parallel.
"""

import json
import os
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

from conftest import (Broker, by_meter, free_port, gateway_config, meterhub_binary, typed,
                      wait_until)

GW_CLIENT = 'meterhub-gw-test'
PREFIX = 'meterhub/gw-test'
PROFILE = {'points': [
    {'name': 'energy_import_kwh', 'table': 'holding', 'address': '0x0000', 'type': 'float32'},
]}
ENERGY = 1234.5

# Absence cannot be awaited: a "never connects" test watches for this long,
# in which the daemon tries at start and again after its 1 s backoff.
NEVER_S = 4


def openssl(*args, cwd):
    subprocess.run(['openssl'] + [str(a) for a in args], check=True, capture_output=True,
                   cwd=cwd)


class Pki:
    """A CA in @directory and the certificates it issues. `openssl ca`,
    because `openssl x509 -req` cannot date a certificate in the past on
    OpenSSL 3.0 (-not_before/-not_after came in 3.4)."""

    def __init__(self, directory, name='test-ca'):
        self.dir = directory / name
        (self.dir / 'issued').mkdir(parents=True)
        (self.dir / 'index.txt').write_text('')
        self.cnf = self.dir / 'ca.cnf'
        self.key = self.dir / 'ca.key'
        self.cert = self.dir / 'ca.crt'
        self.cnf.write_text(
            '[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n'
            '[dn]\nCN = %s\n'
            '[v3_ca]\nbasicConstraints = critical, CA:TRUE\n'
            'keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n'
            '[ca]\ndefault_ca = ca_sect\n'
            '[ca_sect]\ndatabase = %s\nnew_certs_dir = %s\ncertificate = %s\n'
            'private_key = %s\ndefault_md = sha256\npolicy = policy\nunique_subject = no\n'
            'copy_extensions = none\nrand_serial = yes\n'
            '[policy]\ncommonName = supplied\n'
            % (name, self.dir / 'index.txt', self.dir / 'issued', self.cert, self.key))
        self._make_key(self.key, 'ec')
        openssl('req', '-x509', '-new', '-config', self.cnf, '-key', self.key, '-days', '2',
                '-out', self.cert, cwd=self.dir)

    def _make_key(self, path, kind):
        if kind == 'ec':
            opts = ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']
        else:  # 'rsa:BITS'
            opts = ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:%s' % kind[4:]]
        openssl('genpkey', *opts, '-out', path, cwd=self.dir)
        # A private key is owner-only: meterhub refuses any other.
        os.chmod(path, 0o600)

    def issue(self, name, cn='localhost', san='DNS:localhost, IP:127.0.0.1', client=False,
              key='ec', valid=None):
        """A certificate and its key, (cert, key) paths. @valid: (start, end)
        as YYYYMMDDHHMMSSZ; default from now for 2 days."""
        cert, key_path = self.dir / (name + '.crt'), self.dir / (name + '.key')
        csr, ext = self.dir / (name + '.csr'), self.dir / (name + '.ext')
        self._make_key(key_path, key)
        openssl('req', '-new', '-config', self.cnf, '-key', key_path, '-subj', '/CN=' + cn,
                '-out', csr, cwd=self.dir)
        ext.write_text('[ext]\nbasicConstraints = critical, CA:FALSE\n'
                       'extendedKeyUsage = %s\n%s'
                       % ('clientAuth' if client else 'serverAuth',
                          'subjectAltName = %s\n' % san if san else ''))
        dates = ['-startdate', valid[0], '-enddate', valid[1]] if valid else ['-days', '2']
        openssl('ca', '-batch', '-config', self.cnf, '-notext', '-in', csr,
                '-out', cert, '-extfile', ext, '-extensions', 'ext', *dates, cwd=self.dir)
        return cert, key_path


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def tls_broker(procs, tmp_path, pki, cert, key, env=None, **options):
    """mosquitto with a TLS listener (broker.port) serving @cert, and a plain
    one (broker.plain_port) for the test's subscriber."""
    tls = {'cafile': pki.cert, 'certfile': cert, 'keyfile': key}
    tls.update(options)
    return Broker(procs, tmp_path, tls=tls, env=env)


def old_tls_env(tmp_path, **settings):
    """An environment whose OpenSSL makes what Debian's defaults refuse:
    @settings go to the system_default section (MinProtocol, CipherString...)."""
    conf = tmp_path / 'old-openssl.cnf'
    conf.write_text('openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\n'
                    'system_default = sys\n[sys]\n' +
                    ''.join('%s = %s\n' % kv for kv in settings.items()))
    return dict(os.environ, OPENSSL_CONF=str(conf))


def bus(device):
    return {'name': 'rs485-1', 'device': device, 'baud': 9600, 'parity': 'none',
            'protocol': 'modbus', 'timeout': '300ms',
            'meters': [{'id': 'm-1', 'address': 1, 'profile': 'p'}]}


def tls_config(tmp_path, uri, tls, device=None, **mqtt):
    """The daemon on @uri with mqtt.tls @tls. Without @device its one bus is
    missing: the meter's readings say so, and are published all the same,
    so the daemon always has something to send."""
    cfg = gateway_config(tmp_path, 0, [bus(device or str(tmp_path / 'no-such-tty'))],
                         profiles={'p': PROFILE})
    cfg['mqtt'] = dict({'uri': uri, 'tls': {k: str(v) for k, v in tls.items()}}, **mqtt)
    return cfg


def meter(modbus_sim):
    return modbus_sim('bus1', {'1': {'typed': [typed('holding', 0, 'float32', ENERGY)]}})


def assert_readings_arrive(gateway, cfg, broker, sub):
    """The daemon connects, and the meter's reading arrives with its value."""
    gw = gateway(cfg).start()
    wait_until(lambda: by_meter(sub.readings(PREFIX)).get('m-1'), 15, what='a reading')
    r = by_meter(sub.readings(PREFIX))['m-1'][0]
    assert r['quality'] == 'good', r
    assert r['values']['energy_import_kwh'] == pytest.approx(ENERGY)
    assert gw.stop() == 0
    assert broker.clients().count(GW_CLIENT) >= 1
    return gw.log()


def never(predicate, what, seconds=NEVER_S):
    """Fail as soon as @predicate holds; return when it did not for @seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not predicate(), what
        time.sleep(0.1)


def said(gw, *reasons):
    """The daemon's log names every one of @reasons. It does so at its first
    attempt, well within NEVER_S; the longer bound only spares a slow machine."""
    wait_until(lambda: all(r in gw.log() for r in reasons), 10,
               what='the daemon to say %r' % (reasons,))


def assert_refused(gw, broker, *reasons, sub=None):
    """Within NEVER_S no attempt of the daemon's gets an MQTT session (the
    broker accepts no CONNECT from it, nothing it publishes reaches a
    subscriber), it names why, and it stops cleanly."""
    never(lambda: GW_CLIENT in broker.clients() or 'connected to' in gw.log() or
          (sub is not None and sub.snapshot(PREFIX)),
          'the daemon connected or published')
    said(gw, *reasons)
    assert gw.stop() == 0
    return gw.log()


# -- the right broker ---------------------------------------------------------

@pytest.mark.parametrize('host', ['127.0.0.1', 'localhost'])
def test_tls_right_ca_and_name_connects_and_readings_arrive(procs, tmp_path, pki, modbus_sim,
                                                            gateway, subscriber_factory, host):
    # 127.0.0.1 matches the certificate's IP entry, localhost its DNS entry.
    broker = tls_broker(procs, tmp_path, pki, *pki.issue('server'))
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    cfg = tls_config(tmp_path, 'ssl://%s:%d' % (host, broker.port), {'ca': pki.cert},
                     device=meter(modbus_sim).gateway_end)
    log = assert_readings_arrive(gateway, cfg, broker, sub)
    # The TLS setup is checked at start and found sound: the best the broker offers.
    assert 'TLS to ssl://%s:%d checked: TLSv1.3' % (host, broker.port) in log
    assert 'broker certificate CN=localhost' in log


def test_tls_broker_with_password(procs, tmp_path, pki, modbus_sim, gateway,
                                  subscriber_factory):
    cert, key = pki.issue('server')
    plain, secure = free_port(), free_port()
    broker_dir = tmp_path / 'broker'
    broker_dir.mkdir()
    (broker_dir / 'passwd').write_text('')
    subprocess.run(['mosquitto_passwd', '-b', str(broker_dir / 'passwd'), 'gw', 's3cret'],
                   check=True)
    # Anonymous on the plain listener (the test's subscriber), a password on TLS.
    conf = broker_dir / 'mosquitto.conf'
    conf.write_text(
        'per_listener_settings true\nuser root\npersistence false\n'
        'log_dest file %s/mosquitto.log\n'
        'listener %d 127.0.0.1\nallow_anonymous true\n'
        'listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n'
        'allow_anonymous false\npassword_file %s/passwd\n'
        % (broker_dir, plain, secure, pki.cert, cert, key, broker_dir))
    procs.start(['mosquitto', '-c', str(conf)], 'tls-mosquitto')
    wait_until(lambda: subprocess.run(['mosquitto_pub', '-p', str(plain), '-t', 'x', '-m', 'x'],
                                      capture_output=True).returncode == 0, 10,
               what='the broker')
    # A secret file others can read is refused at load: owner-only, whatever the umask.
    (tmp_path / 'password').write_text('s3cret\n')
    os.chmod(tmp_path / 'password', 0o600)
    cfg = tls_config(tmp_path, 'ssl://127.0.0.1:%d' % secure, {'ca': pki.cert},
                     device=meter(modbus_sim).gateway_end,
                     username='gw', password_file=str(tmp_path / 'password'))
    sub = subscriber_factory(plain, PREFIX + '/#')
    gw = gateway(cfg).start()
    wait_until(lambda: by_meter(sub.readings(PREFIX)).get('m-1'), 15, what='a reading')
    got = by_meter(sub.readings(PREFIX))['m-1'][0]
    assert got['values']['energy_import_kwh'] == pytest.approx(ENERGY)
    assert gw.stop() == 0


# -- a broker that is not the one configured ---------------------------------

def test_tls_with_wrong_ca_never_connects(procs, tmp_path, pki, gateway):
    broker = tls_broker(procs, tmp_path, pki, *pki.issue('server'))
    # A CA that did not sign the broker's certificate: the gateway must refuse the broker.
    wrong = Pki(tmp_path, 'other-ca')
    gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port,
                            {'ca': wrong.cert})).start()
    log = assert_refused(gw, broker, "refused the broker's certificate",
                         'no CA in %s (mqtt.tls.ca) issued it' % wrong.cert)
    assert 'cannot connect' in log and 'connected to' not in log
    # paho's own attempts say what OpenSSL said (ssl_error_cb).
    assert 'TLS to ssl://127.0.0.1:%d: certificate verify failed' % broker.port in log
    # The handshake stopped at the gateway: it sent the broker its alert.
    assert 'alert unknown ca' in broker.log_text()
    # Nothing went anywhere else in clear: not a single connection on the plain port.
    assert broker.connections(broker.plain_port) == 0


def test_tls_expired_certificate_is_refused(procs, tmp_path, pki, gateway, subscriber_factory):
    cert, key = pki.issue('server', valid=('20200101000000Z', '20200201000000Z'))
    broker = tls_broker(procs, tmp_path, pki, cert, key)
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port,
                            {'ca': pki.cert})).start()
    assert_refused(gw, broker, "refused the broker's certificate: certificate has expired",
                   'valid from 2020-01-01 00:00:00Z to 2020-02-01 00:00:00Z', sub=sub)
    assert 'alert certificate expired' in broker.log_text()


@pytest.mark.parametrize('host,mismatch', [('127.0.0.1', 'IP address mismatch'),
                                           ('localhost', 'hostname mismatch')])
def test_tls_certificate_for_another_host_is_refused(procs, tmp_path, pki, gateway,
                                                     subscriber_factory, host, mismatch):
    # Valid, signed by the right CA, for another name: paho checks the name
    # after the handshake (X509_check_host, then X509_check_ip_asc for an
    # address), and refuses it for a DNS name and an address alike.
    broker = tls_broker(procs, tmp_path, pki,
                        *pki.issue('server', cn='other.example', san='DNS:other.example'))
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    gw = gateway(tls_config(tmp_path, 'ssl://%s:%d' % (host, broker.port),
                            {'ca': pki.cert})).start()
    assert_refused(gw, broker, "refused the broker's certificate: %s "
                   '(it is for DNS:other.example, not %s)' % (mismatch, host), sub=sub)


# -- client certificates -------------------------------------------------------

def test_tls_client_certificate_is_shown_when_asked(procs, tmp_path, pki, modbus_sim, gateway,
                                                    subscriber_factory):
    broker = tls_broker(procs, tmp_path, pki, *pki.issue('server'),
                        require_certificate='true')
    cert, key = pki.issue('gateway', cn='gw-test', san='DNS:gw-test', client=True)
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    cfg = tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port,
                     {'ca': pki.cert, 'cert': cert, 'key': key},
                     device=meter(modbus_sim).gateway_end)
    assert_readings_arrive(gateway, cfg, broker, sub)
    # The key must be the owner's alone: any other mode is a config error.
    os.chmod(key, 0o640)
    path = tmp_path / 'check.yaml'
    path.write_text(json.dumps(cfg))
    check = subprocess.run([meterhub_binary(), '--check-config', '-c', str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 1, check
    assert 'mqtt.tls.key' in check.stderr and 'chmod 600' in check.stderr, check.stderr


@pytest.mark.parametrize('case', ['none', 'from another CA'])
def test_tls_without_an_accepted_client_certificate_is_refused(procs, tmp_path, pki, gateway,
                                                               subscriber_factory, case):
    broker = tls_broker(procs, tmp_path, pki, *pki.issue('server'),
                        require_certificate='true')
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    tls = {'ca': pki.cert}
    if case == 'none':
        reason = 'the broker wants a client certificate'
    else:
        cert, key = Pki(tmp_path, 'rogue-ca').issue('gateway', cn='gw-test', san=None,
                                                    client=True)
        tls.update(cert=cert, key=key)
        reason = "the broker refused this gateway's certificate %s (mqtt.tls.cert)" % cert
    gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port, tls)).start()
    assert_refused(gw, broker, reason, sub=sub)


# -- nothing old, weak or in clear ---------------------------------------------

def handshake(port, ca, oldest=None, newest=None, ciphers=None):
    """A handshake of the test's own with the listener on @port, taking TLS
    versions @oldest to @newest: the version it got."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # TLS 1.0 and 1.1, on purpose
        if oldest:
            ctx.minimum_version = oldest
        if newest:
            ctx.maximum_version = newest
    if ciphers:
        ctx.set_ciphers(ciphers)
    with socket.create_connection(('127.0.0.1', port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname='localhost') as tls:
            return tls.version()


class LegacyTlsServer:
    """A TLS 1.0 server, for what mosquitto 2.0.11 cannot be: it refuses TLS
    1.0 itself (tls_version takes tlsv1.1 at the oldest). It records the
    handshakes it completes and any byte of application data that follows,
    which an MQTT CONNECT would be."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)
            self.ctx.minimum_version = self.ctx.maximum_version = ssl.TLSVersion.TLSv1
        self.ctx.set_ciphers('AES128-SHA:AES256-SHA:@SECLEVEL=0')
        self.ctx.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(('127.0.0.1', 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self.received = b''
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    self.received += tls.recv(4096)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self):
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept(), as close() would not
        self.listener.close()
        self.thread.join(10)


@pytest.mark.parametrize('version', ['TLSv1.1', 'TLSv1'])
def test_tls_refuses_a_broker_older_than_tls_1_2(procs, tmp_path, pki, gateway,
                                                 subscriber_factory, version):
    # RSA key transport: the one handshake before TLS 1.2 that OpenSSL 3.0
    # completes at Debian's security level (an ECDHE one fails on its SHA-1
    # signature), and that paho, ignoring sslVersion, would have accepted.
    cert, key = pki.issue('server', key='rsa:2048')
    old = ssl.TLSVersion.TLSv1_1 if version == 'TLSv1.1' else ssl.TLSVersion.TLSv1
    if version == 'TLSv1.1':
        broker = tls_broker(procs, tmp_path, pki, cert, key, tls_version='tlsv1.1',
                            ciphers='AES128-SHA:AES256-SHA:@SECLEVEL=0',
                            env=old_tls_env(tmp_path, MaxProtocol='TLSv1.1'))
        server, port = None, broker.port
    else:
        server = LegacyTlsServer(cert, key)
        port = server.port
    try:
        # The listener offers that version, and nothing newer. Debian's own
        # Python (its default context takes any version) would take it too.
        assert handshake(port, pki.cert, old, old, 'DEFAULT:@SECLEVEL=0') == version
        assert handshake(port, pki.cert) == version
        with pytest.raises(ssl.SSLError):
            handshake(port, pki.cert, oldest=ssl.TLSVersion.TLSv1_2)
        gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % port,
                                {'ca': pki.cert})).start()
        reason = 'the broker offers only TLS versions before 1.2, which this gateway refuses'
        if server is None:
            assert_refused(gw, broker, reason,
                           sub=subscriber_factory(broker.plain_port, PREFIX + '/#'))
        else:
            ours = server.handshakes  # the two above
            never(lambda: server.handshakes > ours, 'the daemon completed a TLS 1.0 handshake')
            said(gw, reason)
            assert gw.stop() == 0
            assert server.received == b''
    finally:
        if server:
            server.close()


def test_tls_refuses_a_weak_broker_key(procs, tmp_path, pki, gateway, subscriber_factory):
    # A 1024-bit RSA key: 80-bit strength, which paho's security level 1 would
    # accept, and Debian's level 2 (112 bits) does not.
    cert, key = pki.issue('server', key='rsa:1024')
    broker = tls_broker(procs, tmp_path, pki, cert, key,
                        env=old_tls_env(tmp_path, CipherString='DEFAULT:@SECLEVEL=0'))
    assert handshake(broker.port, pki.cert, ciphers='DEFAULT:@SECLEVEL=1') == 'TLSv1.3'
    with pytest.raises(ssl.SSLError):
        handshake(broker.port, pki.cert)
    sub = subscriber_factory(broker.plain_port, PREFIX + '/#')
    gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port,
                            {'ca': pki.cert})).start()
    assert_refused(gw, broker, "refused the broker's certificate: EE certificate key too weak",
                   sub=sub)


def test_tls_never_falls_back_to_plaintext(procs, tmp_path, pki, broker, gateway,
                                           subscriber_factory):
    # An ssl:// URI pointing at a plaintext broker: it is reached, and told nothing.
    sub = subscriber_factory(broker.port, PREFIX + '/#')
    before = broker.connections(broker.port)
    gw = gateway(tls_config(tmp_path, 'ssl://127.0.0.1:%d' % broker.port,
                            {'ca': pki.cert})).start()
    assert_refused(gw, broker, 'the broker does not speak TLS on port %d' % broker.port,
                   sub=sub)
    # The daemon did reach it, and got no MQTT session: the subscriber has the only one.
    assert broker.connections(broker.port) > before
    assert broker.clients() == ['test-sub']
