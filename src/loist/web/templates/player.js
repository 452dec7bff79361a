(function(){
var $=function(i){return document.getElementById(i)},p=$("player"),a=$("audio"),b=$("play"),s=$("seek"),v=$("vol"),cur=$("cur"),dur=$("dur"),dragging=false;
function f(x){if(!isFinite(x)||x<0)return"--:--";x=Math.round(x);var h=Math.floor(x/3600),m=Math.floor(x%3600/60),c=x%60;return(h?h+":"+(m<10?"0":""):"")+m+":"+(c<10?"0":"")+c}
function d(){return isFinite(a.duration)?a.duration:0}
function ui(){var on=!a.paused;$("i-play").classList.toggle("hide",on);$("i-pause").classList.toggle("hide",!on);b.setAttribute("aria-label",on?"Pause":"Play")}
function tick(){cur.textContent=f(a.currentTime);if(!dragging&&d())s.value=Math.round(a.currentTime/d()*1000)}
function meta(){if(d()){dur.textContent=f(d());p.dataset.duration=d().toFixed(3);p.dataset.state="ready"}}
function toggle(){if(a.paused){var r=a.play();if(r&&r.catch)r.catch(function(){})}else a.pause()}
function seekBy(x){if(d())a.currentTime=Math.max(0,Math.min(d(),a.currentTime+x))}
function volBy(x){a.volume=Math.max(0,Math.min(1,Math.round((a.volume+x)*20)/20));v.value=a.volume}
b.addEventListener("click",toggle);
a.addEventListener("play",ui);a.addEventListener("pause",ui);a.addEventListener("ended",ui);
a.addEventListener("timeupdate",tick);a.addEventListener("loadedmetadata",meta);a.addEventListener("durationchange",meta);
a.addEventListener("error",function(){p.dataset.state="error";$("err").classList.remove("hide")});
s.addEventListener("input",function(){dragging=true;cur.textContent=f(s.value/1000*d())});
s.addEventListener("change",function(){dragging=false;if(d())a.currentTime=s.value/1000*d()});
v.addEventListener("input",function(){a.volume=+v.value});
document.addEventListener("keydown",function(e){var k=e.key;
if(k===" "||k==="Spacebar"||k==="k"){if(e.target===b&&k!=="k")return;e.preventDefault();toggle()}
else if(k==="ArrowLeft"){e.preventDefault();seekBy(-5)}else if(k==="ArrowRight"){e.preventDefault();seekBy(5)}
else if(k==="ArrowUp"){e.preventDefault();volBy(.1)}else if(k==="ArrowDown"){e.preventDefault();volBy(-.1)}});
if(a.readyState>0)meta();
})();
