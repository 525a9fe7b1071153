// jTDS client for sqltunnel/tdstest tests.
//
// Usage: java -cp DIR:jtds.jar Client URL USER; the password comes from the
// TDSTEST_PASSWORD environment variable. It connects (jTDS sends its own
// batch of SET statements and SELECT @@MAX_PRECISION right after the
// login), runs SELECT 1, SELECT @@VERSION and SELECT * FROM
// tdstest.nrows(2, 64) and prints one JSON line:
// {"ok":true,"results":{"select1":1,"version":"...","nrows":["...","..."]}} or
// {"ok":false,"stage":"connect"|"query","code":"<SQLState>","error":"..."}.
// The exit status is 0 either way.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class Client {
    public static void main(String[] args) throws Exception {
        Class.forName("net.sourceforge.jtds.jdbc.Driver");
        String stage = "connect";
        try (Connection conn = DriverManager.getConnection(args[0], args[1], System.getenv("TDSTEST_PASSWORD"))) {
            stage = "query";
            try (Statement st = conn.createStatement()) {
                int one;
                String version;
                StringBuilder rows = new StringBuilder();
                try (ResultSet rs = st.executeQuery("SELECT 1")) {
                    rs.next();
                    one = rs.getInt(1);
                }
                try (ResultSet rs = st.executeQuery("SELECT @@VERSION")) {
                    rs.next();
                    version = rs.getString(1);
                }
                try (ResultSet rs = st.executeQuery("SELECT * FROM tdstest.nrows(2, 64)")) {
                    while (rs.next()) {
                        rows.append(rows.length() == 0 ? "" : ",").append(quote(rs.getString(1)));
                    }
                }
                System.out.println("{\"ok\":true,\"results\":{\"select1\":" + one + ",\"version\":" + quote(version)
                    + ",\"nrows\":[" + rows + "]}}");
            }
        } catch (SQLException e) {
            System.out.println("{\"ok\":false,\"stage\":\"" + stage + "\",\"code\":" + quote(e.getSQLState())
                + ",\"error\":" + quote(e.getMessage()) + "}");
        }
    }

    static String quote(String s) {
        if (s == null) {
            return "\"\"";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
