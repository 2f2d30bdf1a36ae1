package dev.mechgraph.server;

import java.util.List;
import java.util.Map;
import org.neo4j.values.storable.Value;
import org.neo4j.values.storable.Values;

/** Turns values that arrive over Bolt into values Neo4j can store, and compares stored values. */
final class StorableValues {
    private StorableValues() {}

    /** Equal value and equal stored type (so 1 vs 1.0, or long[] vs double[], counts as a change). */
    static boolean sameStored(Value stored, Value wanted) {
        return stored.valueRepresentation() == wanted.valueRepresentation() && stored.equals(wanted);
    }

    /**
     * Converts a value that came in over Bolt to one Neo4j can store: scalars pass through, a list of
     * one primitive kind becomes a typed array (integers mixed with floats become double[], as Cypher
     * does), maps and mixed/nested lists are rejected. Null stays null (= not set).
     */
    static Object storable(String where, Object v) {
        if (v == null || v instanceof String || v instanceof Long || v instanceof Double || v instanceof Boolean) {
            return v;
        }
        if (v instanceof List<?> list) {
            return toArray(where, list);
        }
        if (v instanceof Map<?, ?>) {
            throw new WriteProcedures.InvalidArgument(where + ": a map cannot be stored as a property value");
        }
        if (v instanceof org.neo4j.graphdb.Entity || v instanceof org.neo4j.graphdb.Path) {
            throw new WriteProcedures.InvalidArgument(where + ": a node/relationship/path cannot be stored as a property value");
        }
        // Integer/Float/arrays/temporal/spatial values: Neo4j stores them as they are.
        if (Values.of(v, false) == null) {
            throw new WriteProcedures.InvalidArgument(where + ": values of type " + v.getClass().getName() + " cannot be stored as properties");
        }
        return v;
    }

    private static Object toArray(String where, List<?> list) {
        int n = list.size();
        if (n == 0) {
            return new String[0]; // what Cypher stores for an empty list
        }
        boolean allString = true;
        boolean allBool = true;
        boolean allIntegral = true;
        boolean allNumber = true;
        for (Object e : list) {
            if (e == null) {
                throw new WriteProcedures.InvalidArgument(where + ": lists stored as properties cannot contain null");
            }
            allString &= e instanceof String;
            allBool &= e instanceof Boolean;
            boolean integral = e instanceof Long || e instanceof Integer || e instanceof Short || e instanceof Byte;
            allIntegral &= integral;
            allNumber &= integral || e instanceof Double || e instanceof Float;
        }
        if (allString) {
            return list.toArray(new String[0]);
        }
        if (allBool) {
            boolean[] a = new boolean[n];
            for (int i = 0; i < n; i++) {
                a[i] = (Boolean) list.get(i);
            }
            return a;
        }
        if (allIntegral) {
            long[] a = new long[n];
            for (int i = 0; i < n; i++) {
                a[i] = ((Number) list.get(i)).longValue();
            }
            return a;
        }
        if (allNumber) {
            double[] a = new double[n];
            for (int i = 0; i < n; i++) {
                a[i] = ((Number) list.get(i)).doubleValue();
            }
            return a;
        }
        throw new WriteProcedures.InvalidArgument(where + ": a list stored as a property must hold only strings, only booleans or only"
                + " numbers (no nested lists, maps or mixed types)");
    }

}
