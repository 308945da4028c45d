// JSSE mutual-TLS peer for trustwire interop tests (compiled by tests/interop/test_java.py).
//
// Reads a case file (tab-separated lines) and, for each case, starts an SSLServerSocket
// on 127.0.0.1:0 that *requires* a client certificate, connects a JSSE client to it with
// HTTPS endpoint identification (host-name check) and SNI, exchanges one line, and prints
//   RESULT <name> \t server=OK|FAIL ... \t client=OK|FAIL ...
// Stores are opened exactly as a Java application would: KeyStore.getInstance(type).load(),
// PKIX KeyManagerFactory and default (PKIX) TrustManagerFactory, key password = store password.
import java.io.BufferedReader;
import java.io.EOFException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.net.Socket;
import java.security.Principal;
import java.security.PrivateKey;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public final class TlsPeer {
    private static final int TIMEOUT_MS = 10_000;

    private static KeyStore load(String type, String path, String password) throws Exception {
        KeyStore store = KeyStore.getInstance(type);
        try (InputStream in = Files.newInputStream(Path.of(path))) {
            store.load(in, password.toCharArray());
        }
        return store;
    }

    /**
     * A client key manager that offers its certificate even when the server's certificate_authorities
     * list does not name its issuer. JSSE clients normally stay silent then ("Empty client certificate
     * chain"); forcing the offer makes the *server's* trust decision observable.
     */
    private static final class OfferAnyway extends X509ExtendedKeyManager {
        private final X509ExtendedKeyManager delegate;

        OfferAnyway(X509ExtendedKeyManager delegate) {
            this.delegate = delegate;
        }

        // issuers == null: "any issuer" — the delegate still picks by key type and returns its alias form.
        @Override public String[] getClientAliases(String keyType, Principal[] issuers) {
            return delegate.getClientAliases(keyType, null);
        }
        @Override public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) {
            return delegate.chooseClientAlias(keyType, null, socket);
        }
        @Override public String[] getServerAliases(String keyType, Principal[] issuers) {
            return delegate.getServerAliases(keyType, issuers);
        }
        @Override public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
            return delegate.chooseServerAlias(keyType, issuers, socket);
        }
        @Override public X509Certificate[] getCertificateChain(String a) {
            return delegate.getCertificateChain(a);
        }
        @Override public PrivateKey getPrivateKey(String a) {
            return delegate.getPrivateKey(a);
        }
    }

    private static SSLContext context(String type, String ks, String ksPass, String ts, String tsPass,
            boolean offerAnyway) throws Exception {
        KeyStore keyStore = load(type, ks, ksPass);
        KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
        kmf.init(keyStore, ksPass.toCharArray());
        KeyManager[] managers = kmf.getKeyManagers();
        if (offerAnyway) {
            managers = new KeyManager[] {new OfferAnyway((X509ExtendedKeyManager) managers[0])};
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(load(type, ts, tsPass));
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(managers, tmf.getTrustManagers(), null);
        return ctx;
    }

    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (sb.length() > 0) sb.append(" <- ");
            sb.append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
        }
        return sb.toString().replace('\t', ' ').replace('\n', ' ');
    }

    private static String peer(SSLSocket s) throws Exception {
        X509Certificate cert = (X509Certificate) s.getSession().getPeerCertificates()[0];
        return cert.getSubjectX500Principal().getName();
    }

    private static String runCase(String[] f) throws Exception {
        String name = f[0], type = f[1], protocol = f[10], host = f[11];
        boolean offerAnyway = f.length > 12 && f[12].equals("offer-anyway");
        SSLContext server;
        SSLContext client;
        try {
            server = context(type, f[2], f[3], f[4], f[5], false);
            client = context(type, f[6], f[7], f[8], f[9], offerAnyway);
        } catch (Exception e) {
            return "RESULT " + name + "\tserver=FAIL setup " + describe(e) + "\tclient=FAIL setup";
        }
        ExecutorService executor = Executors.newSingleThreadExecutor();
        try (SSLServerSocket ss = (SSLServerSocket) server.getServerSocketFactory()
                .createServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            ss.setNeedClientAuth(true);
            ss.setEnabledProtocols(new String[] {protocol});
            ss.setSoTimeout(TIMEOUT_MS);
            int port = ss.getLocalPort();
            Future<String> serverResult = executor.submit(() -> {
                try (SSLSocket s = (SSLSocket) ss.accept()) {
                    s.setSoTimeout(TIMEOUT_MS);
                    s.startHandshake();
                    String who = peer(s);
                    BufferedReader in = new BufferedReader(
                            new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
                    String line = in.readLine();
                    OutputStream out = s.getOutputStream();
                    out.write(("PONG " + line + "\n").getBytes(StandardCharsets.UTF_8));
                    out.flush();
                    return "OK " + s.getSession().getProtocol() + " peer=" + who;
                } catch (Exception e) {
                    return "FAIL " + describe(e);
                }
            });
            String clientResult;
            try (Socket raw = new Socket()) {
                raw.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), TIMEOUT_MS);
                raw.setSoTimeout(TIMEOUT_MS);
                try (SSLSocket s = (SSLSocket) client.getSocketFactory().createSocket(raw, host, port, true)) {
                    SSLParameters params = s.getSSLParameters();
                    params.setEndpointIdentificationAlgorithm("HTTPS");
                    params.setServerNames(List.of(new SNIHostName(host)));
                    params.setProtocols(new String[] {protocol});
                    s.setSSLParameters(params);
                    s.startHandshake();
                    String who = peer(s);
                    OutputStream out = s.getOutputStream();
                    out.write("PING\n".getBytes(StandardCharsets.UTF_8));
                    out.flush();
                    String reply = new BufferedReader(
                            new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8)).readLine();
                    if (reply == null) throw new EOFException("server closed the connection");
                    clientResult = "OK " + s.getSession().getProtocol() + " peer=" + who + " reply=" + reply;
                }
            } catch (Exception e) {
                clientResult = "FAIL " + describe(e);
            }
            String srv = serverResult.get(TIMEOUT_MS * 2L, TimeUnit.MILLISECONDS);
            return "RESULT " + name + "\tserver=" + srv + "\tclient=" + clientResult;
        } finally {
            executor.shutdownNow();
        }
    }

    public static void main(String[] args) throws Exception {
        for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            if (line.isBlank()) continue;
            System.out.println(runCase(line.split("\t", -1)));
            System.out.flush();
        }
    }
}
