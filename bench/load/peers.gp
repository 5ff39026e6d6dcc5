# Plot of bench/load/peers.sh: messages/s and server CPU per message by server and scenario (log scales).
#   gnuplot -e "dat='results/peers.dat'; svg='results/peers.svg'" peers.gp
# Columns of peers.dat: server, msgs/s for a b c ea eb, server CPU us/msg for a b c ea eb ("nan": not run, e.g.
# the floor over TLS).
set terminal svg size 1300,540 dynamic font "sans,11" background "white"
set output svg
set datafile missing "nan"
set multiplot layout 1,2 title "Echo servers side by side (server on core 0, edgews load on core 1; medians; (e) = wss://)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key top right font ",9"
set xtics rotate by -30 font ",10"
set title "messages/s (higher is better)"
plot dat using 2:xtic(1) title "(a) 100 conns 16 B 1 in flight", '' using 3 title "(b) 16 in flight", \
     '' using 4 title "(c) 10 conns 64 KiB", '' using 5 title "(e) (a) over TLS", '' using 6 title "(e) (b) over TLS"
set title "server CPU us per message (lower is better)"
plot dat using 7:xtic(1) title "(a) 100 conns 16 B 1 in flight", '' using 8 title "(b) 16 in flight", \
     '' using 9 title "(c) 10 conns 64 KiB", '' using 10 title "(e) (a) over TLS", '' using 11 title "(e) (b) over TLS"
unset multiplot
