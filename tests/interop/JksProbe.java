import java.io.FileInputStream;
import java.security.Key;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.UnrecoverableKeyException;
import java.security.cert.Certificate;
import java.util.Collections;
import java.util.HexFormat;

/**
 * Opens a JKS file as Java's own KeyStore.getInstance("JKS") does and prints what it holds:
 * one line per entry with the SHA-256 of the key's encoding and of each certificate, so the
 * Python side can compare them with what it wrote. Also proves the password is checked:
 * a wrong store password fails load(), a wrong key password fails getKey().
 *
 * Usage: java JksProbe FILE STOREPASS
 */
public final class JksProbe {
    private static String sha256(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }

    public static void main(String[] args) throws Exception {
        char[] password = args[1].toCharArray();
        KeyStore store = KeyStore.getInstance("JKS");
        try (FileInputStream in = new FileInputStream(args[0])) {
            store.load(in, password);
        }
        for (String alias : Collections.list(store.aliases())) {
            StringBuilder line = new StringBuilder(alias);
            if (store.isKeyEntry(alias)) {
                Key key = store.getKey(alias, password);
                line.append("\tKEY ").append(key.getAlgorithm()).append(' ').append(sha256(key.getEncoded()));
                for (Certificate cert : store.getCertificateChain(alias)) {
                    line.append(' ').append(sha256(cert.getEncoded()));
                }
                try {
                    store.getKey(alias, "not-the-password".toCharArray());
                    line.append("\tWRONG-KEY-PASSWORD-ACCEPTED");
                } catch (UnrecoverableKeyException expected) {
                    line.append("\tWRONG-KEY-PASSWORD-REFUSED");
                }
            } else {
                line.append("\tTRUSTED ").append(sha256(store.getCertificate(alias).getEncoded()));
            }
            System.out.println(line);
        }
        KeyStore other = KeyStore.getInstance("JKS");
        try (FileInputStream in = new FileInputStream(args[0])) {
            other.load(in, "not-the-password".toCharArray());
            System.out.println("WRONG-STORE-PASSWORD-ACCEPTED");
        } catch (java.io.IOException expected) {
            System.out.println("WRONG-STORE-PASSWORD-REFUSED " + expected.getMessage());
        }
    }
}
